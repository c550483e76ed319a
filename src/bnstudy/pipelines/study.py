"""A study of the roster as one pipeline: its data, its models' training, and the general
analysis and report of its comparisons, in the namespace ``<study>``.

A study with questions of its own (``beyond_study``) passes their nodes and the
:class:`~bnstudy.reporting.document.ReportPart` datasets they end in; the report node adds
those parts to the general report. Nothing else of a study is code.
"""

from __future__ import annotations

from collections.abc import Sequence

from kedro.pipeline import Pipeline

from bnstudy.pipelines import analysis, data_ingestion, preprocessing, reporting, training


def study_pipeline(study: str, questions: Pipeline | None = None, parts: Sequence[str] = ()) -> Pipeline:
    """The data, ``study``'s training namespaces, and the analysis and report of its
    comparisons in the namespace ``<study>`` (outputs ``<study>.<name>_table``,
    ``<study>.study_report_md``, ...; the catalog's ``{study}.*`` patterns). The models of a
    study it extends are read, not trained (run that study first, or both:
    ``kedro run --pipelines full_study,<study>``).

    Args:
        study: a study of the roster.
        questions: nodes of the study's own questions, in the same namespace: they read the
            analysis's outputs by their names inside it (``model_comparisons_summary``, ...)
            and every model's outputs by their full names (``<model>.run_record``).
        parts: the questions whose ``<question>_report_part`` the report adds, in order.
    """
    stages = (analysis.create_pipeline(study) + reporting.create_pipeline(study, parts=parts)
              + (questions or Pipeline([])))
    parameters = {name for name in stages.inputs() if name.startswith("params:")}
    shared = {name for name in stages.inputs() if not name.startswith("params:")}
    compared = Pipeline(stages, namespace=study, inputs=shared,
                        parameters={name: name for name in parameters})
    inputs = data_ingestion.create_pipeline() + preprocessing.create_pipeline()
    return inputs + training.create_pipeline(study) + compared
