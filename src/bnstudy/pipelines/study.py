"""A study of the roster as one pipeline: its data, its models' training, and the general
analysis and report of its comparisons, in the namespace ``<study>``.

A study with questions of its own (``beyond_study``) passes their nodes and the
:class:`~bnstudy.reporting.document.ReportPart` datasets they end in; the report node adds
those parts to the general report. Nothing else of a study is code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kedro.pipeline import Node, Pipeline

from bnstudy.errors import ParameterError
from bnstudy.pipelines import (
    analysis,
    data_ingestion,
    linear_data,
    preprocessing,
    reporting,
    training,
)
from bnstudy.roster import STUDY_SECTIONS, merged, pipeline_roster


def data_pipeline(data: str) -> Pipeline:
    """The pipeline that makes a study's data (``studies.<s>.data``)."""
    if data == "linear_regression":
        return linear_data.create_pipeline()
    return data_ingestion.create_pipeline() + preprocessing.create_pipeline()


DATA_SETUP = {"cifar10": ("cifar10_provenance", "params:preprocessing"),
              "linear_regression": ("linear_data_provenance", "params:linear_data")}
"""What the report's Setup reads of each kind of data: its provenance and its parameters."""


def study_settings(study: dict[str, Any], **shared: dict[str, Any]) -> tuple[dict, ...]:
    """The ``analysis`` and ``reporting`` sections of a study: the shared ones with its
    roster entry's overrides (``studies.<s>.analysis``, ``.reporting``) merged over them."""
    return tuple(merged(shared[section], study.get(section) or None)
                 for section in STUDY_SECTIONS)


def study_pipeline(study: str, questions: Pipeline | None = None, parts: Sequence[str] = ()) -> Pipeline:
    """The data, ``study``'s training namespaces, and the analysis and report of its
    comparisons in the namespace ``<study>`` (outputs ``<study>.<name>_table``,
    ``<study>.study_report_md``, ...; the catalog's ``{study}.*`` patterns). The models of a
    study it extends are read, not trained (run that study first, or both:
    ``kedro run --pipelines full_study,<study>``).

    A study's data (``studies.<s>.data``) chooses the data pipeline, the model input and the
    Setup's provenance; a study that overrides ``analysis`` or ``reporting`` gets a node that
    merges its overrides over the shared sections, which its analysis and report read
    (``<study>.analysis_settings``, ``<study>.reporting_settings``).

    Args:
        study: a study of the roster.
        questions: nodes of the study's own questions, in the same namespace: they read the
            analysis's outputs by their names inside it (``model_comparisons_summary``, ...)
            and every model's outputs by their full names (``<model>.run_record``).
        parts: the questions whose ``<question>_report_part`` the report adds, in order.
    """
    roster = pipeline_roster()
    entry, data = roster.studies[study], roster.data(study)
    settings = Pipeline([])
    names = {section: f"params:{section}" for section in STUDY_SECTIONS}
    if entry.overrides():
        names = {section: f"{section}_settings" for section in STUDY_SECTIONS}
        settings = Pipeline([Node(
            func=study_settings,
            inputs={"study": f"params:studies.{study}",
                    **{section: f"params:{section}" for section in STUDY_SECTIONS}},
            outputs=[names[section] for section in STUDY_SECTIONS],
            name="study_settings_node", tags=["analysis", "reporting"])])
    provenance, setup = DATA_SETUP[data]
    stages = (settings + analysis.create_pipeline(study, settings=names["analysis"])
              + reporting.create_pipeline(study, parts=parts, settings=names["reporting"],
                                          provenance=provenance, data_parameters=setup)
              + (questions or Pipeline([])))
    parameters = {name for name in stages.inputs() if name.startswith("params:")}
    shared = {name for name in stages.inputs() if not name.startswith("params:")}
    compared = Pipeline(stages, namespace=study, inputs=shared,
                        parameters={name: name for name in parameters})
    return data_pipeline(data) + training.create_pipeline(study) + compared


def study_with_questions(study: str, questions: Callable[[tuple[str, ...]], Pipeline],
                         parts: Sequence[str]) -> Pipeline:
    """The pipeline of a study folder (``pipelines/<study>``): :func:`study_pipeline` with
    ``questions(models)`` over every model the study compares, ``parts`` its report parts.

    Raises:
        ParameterError: the roster declares no such study.
    """
    roster = pipeline_roster()
    if study not in roster.studies:
        raise ParameterError(
            f"Parameter studies.{study}: the roster declares no such study, but the pipeline "
            f"folder pipelines/{study} asks its questions of it. Declare it in "
            "conf/<env>/parameters_roster.yml (conf/base has it).")
    return study_pipeline(study, questions(roster.compared_in(study)), parts)
