"""Project pipelines: the stages, and one pipeline per study of the roster."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from bnstudy.pipelines.study import study_pipeline
from bnstudy.roster import pipeline_roster


def register_pipelines() -> dict[str, Pipeline]:
    """Register every folder of ``bnstudy.pipelines`` and every study of the roster
    (:func:`bnstudy.roster.pipeline_roster`, the run's own ``parameters_roster.yml``).

    ``full_study`` (data_ingestion + preprocessing + training + analysis + reporting) is
    also the default pipeline. A study of the roster without a pipeline folder of its own
    gets :func:`bnstudy.pipelines.study.study_pipeline`; a folder of a study's name adds the
    questions only that study asks to the same pipeline (``pipelines/beyond_study``).
    """
    pipelines = find_pipelines(raise_errors=True)
    for study in pipeline_roster().studies:
        if study not in pipelines:
            pipelines[study] = study_pipeline(study)
    if "full_study" in pipelines:
        pipelines["__default__"] = pipelines["full_study"]
    return pipelines
