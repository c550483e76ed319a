"""Project pipelines: the stages, and one pipeline per study of the roster."""

from __future__ import annotations

import importlib
import pkgutil

from kedro.pipeline import Pipeline

import bnstudy.pipelines
from bnstudy.pipelines.study import study_pipeline
from bnstudy.roster import pipeline_roster


def pipeline_folders() -> dict[str, Pipeline]:
    """``create_pipeline()`` of every package of ``bnstudy.pipelines``, by its name.

    Kedro's ``find_pipelines`` does this too, but when the CLI names pipelines (``kedro
    registry describe <study>``) it looks for a folder of each name and raises for a study
    that the roster declares without one; an error inside a folder is raised here as there."""
    found = {}
    for module in pkgutil.iter_modules(bnstudy.pipelines.__path__):
        if module.ispkg:
            found[module.name] = importlib.import_module(f"bnstudy.pipelines.{module.name}").create_pipeline()
    return found


def register_pipelines() -> dict[str, Pipeline]:
    """Register every folder of ``bnstudy.pipelines`` and every study of the roster
    (:func:`bnstudy.roster.pipeline_roster`, the run's own ``parameters_roster.yml``).

    ``full_study`` (data_ingestion + preprocessing + training + analysis + reporting) is
    also the default pipeline. A study of the roster without a pipeline folder of its own
    gets :func:`bnstudy.pipelines.study.study_pipeline`; a folder of a study's name adds the
    questions only that study asks to the same pipeline (``pipelines/beyond_study``).
    """
    pipelines = pipeline_folders()
    for study in pipeline_roster().studies:
        if study not in pipelines:
            pipelines[study] = study_pipeline(study)
    if "full_study" in pipelines:
        pipelines["__default__"] = pipelines["full_study"]
    return pipelines
