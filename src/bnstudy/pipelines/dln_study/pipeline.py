"""Wiring of ``dln_study``: the general study pipeline over its roster on the deep linear
network's data (``studies.dln_study.data: linear_regression``: its data, training, the
analysis of its comparisons, the figures, the report), plus the question only it asks, in the
same namespace ``dln_study``: the top Hessian eigenvalue of full-batch gradient descent
against 2/eta at each learning rate (``analyze_curvature_by_rate_node``,
``plot_curvature_by_rate_node``, ``write_curvature_section_node``), which the report adds as
its ``curvature_report_part``.

``dln_lp_study`` (the Lp normalizations on the DLN) is a study of the roster alone: the
general pipeline (:func:`bnstudy.pipelines.study.study_pipeline`).
"""

from kedro.pipeline import Node, Pipeline

from bnstudy.pipelines.analysis.pipeline import model_inputs
from bnstudy.pipelines.dln_study import nodes
from bnstudy.pipelines.study import study_with_questions

STUDY = "dln_study"
PARTS = ("curvature",)


def questions(models: tuple[str, ...]) -> Pipeline:
    """The curvature question's nodes (inside the namespace)."""
    return Pipeline([
        Node(func=nodes.analyze_curvature_by_rate,
             inputs={"params": "params:beyond",
                     **model_inputs(models)},
             outputs=["curvature_table", "curvature_summary"],
             name="analyze_curvature_by_rate_node", tags=["analysis"]),
        Node(func=nodes.plot_curvature_by_rate, inputs=["curvature_table", "curvature_summary"],
             outputs="curvature_figure", name="plot_curvature_by_rate_node", tags=["reporting"]),
        Node(func=nodes.curvature_part, inputs=["curvature_summary", "curvature_figure"],
             outputs="curvature_report_part", name="write_curvature_section_node",
             tags=["reporting"]),
    ])


def create_pipeline(**kwargs) -> Pipeline:
    return study_with_questions(STUDY, questions, PARTS)
