"""Project pipelines: the stages, and one pipeline per study of the roster."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from bnstudy.pipelines import analysis, data_ingestion, preprocessing, reporting, training
from bnstudy.roster import pipeline_roster


def register_pipelines() -> dict[str, Pipeline]:
    """Register every folder of ``bnstudy.pipelines`` and every study of the roster
    (:func:`bnstudy.roster.pipeline_roster`, the run's own ``parameters_roster.yml``).

    ``full_study`` (data_ingestion + preprocessing + training + analysis + reporting) is
    also the default pipeline. A study of the roster without a pipeline folder of its own
    gets :func:`study_pipeline`.
    """
    pipelines = find_pipelines(raise_errors=True)
    for study in pipeline_roster().studies:
        if study not in pipelines:
            pipelines[study] = study_pipeline(study)
    if "full_study" in pipelines:
        pipelines["__default__"] = pipelines["full_study"]
    return pipelines


def study_pipeline(study: str) -> Pipeline:
    """A study declared in YAML alone: the data, its models' training namespaces, and the
    analysis and report of its comparisons in the namespace ``<study>`` (outputs
    ``<study>.<name>_table``, ``<study>.study_report_md``, ...; the catalog's ``{study}.*``
    patterns). The models of a study it extends are read, not trained (run that study first,
    or both: ``kedro run --pipelines full_study,<study>``)."""
    stages = analysis.create_pipeline(study) + reporting.create_pipeline(study)
    parameters = {name for name in stages.inputs() if name.startswith("params:")}
    shared = {name for name in stages.inputs() if not name.startswith("params:")}
    compared = Pipeline(stages, namespace=study, inputs=shared,
                        parameters={name: name for name in parameters})
    inputs = data_ingestion.create_pipeline() + preprocessing.create_pipeline()
    return inputs + training.create_pipeline(study) + compared
