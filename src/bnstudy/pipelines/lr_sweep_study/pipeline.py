"""Wiring of ``lr_sweep_study``: the general study pipeline over its roster (every model swept
over its ``training.learning_rates``, each pair compared at each rate by the general analysis
and report), plus the sweep's own question in the same namespace: the runs table and summary
(``analyze_sweep_node``), its three figures and its report part (``sweep_report_part``)."""

from kedro.pipeline import Node, Pipeline

from bnstudy.pipelines.analysis.pipeline import model_inputs
from bnstudy.pipelines.lr_sweep_study import nodes
from bnstudy.pipelines.study import study_with_questions

STUDY = "lr_sweep_study"
PARTS = ("sweep",)
COMPARISONS = f"params:studies.{STUDY}.comparisons"


def questions(models: tuple[str, ...]) -> Pipeline:
    """The sweep question's nodes (inside the namespace)."""
    results = model_inputs(models)
    return Pipeline([
        Node(func=nodes.analyze_sweep,
             inputs={"params": "params:sweep", "comparisons": COMPARISONS,
                     **results},
             outputs=["sweep_table", "sweep_summary"], name="analyze_sweep_node",
             tags=["analysis"]),
        Node(func=nodes.plot_sweep, inputs="sweep_table", outputs="sweep_figure",
             name="plot_sweep_node", tags=["reporting"]),
        Node(func=nodes.plot_sweep_curves,
             inputs={"params": "params:sweep", "comparisons": COMPARISONS, **results},
             outputs="sweep_curves_figure", name="plot_sweep_curves_node", tags=["reporting"]),
        Node(func=nodes.plot_sweep_ics,
             inputs={"params": "params:sweep", "reporting": "params:reporting",
                     "comparisons": COMPARISONS, **results},
             outputs="sweep_ics_figure", name="plot_sweep_ics_node", tags=["reporting"]),
        Node(func=nodes.sweep_part,
             inputs={"params": "params:sweep", "summary": "sweep_summary",
                     "sweep_figure": "sweep_figure", "curves_figure": "sweep_curves_figure",
                     "ics_figure": "sweep_ics_figure", **results},
             outputs="sweep_report_part", name="write_sweep_section_node", tags=["reporting"]),
    ])


def create_pipeline(**kwargs) -> Pipeline:
    return study_with_questions(STUDY, questions, PARTS)
