"""Wiring of ``beyond_study``: the general study pipeline over its roster (its models' training,
the analysis of its comparisons, the figures with a line per model, the report), plus the
questions only it asks, in the same namespace ``beyond_study``:

- ``check_same_setup_node``: every model of the study trained with one setup (it reads the
  models of ``full_study`` too: run it after that study, in the same environment);
- the noise question (``answer_noise_question_node``, ``plot_noisy_shift_node``,
  ``write_noise_section_node``);
- the Lp table (``write_lp_section_node``);
- curvature against the stability thresholds (``analyze_curvature_node``,
  ``plot_curvature_node``, ``write_curvature_section_node``).

Each question ends in a ``<question>_report_part`` that the general report adds
(:func:`bnstudy.pipelines.study.study_pipeline`). The questions find their models by
normalization kind; a question whose models the roster lacks says so in the report.
"""

from kedro.pipeline import Node, Pipeline

from bnstudy.pipelines.analysis.pipeline import model_inputs
from bnstudy.pipelines.beyond_study import nodes
from bnstudy.pipelines.study import study_with_questions
from bnstudy.reporting import beyond_report

STUDY = "beyond_study"
PARTS = ("noise_question", "lp_table", "curvature")
"""The questions' report parts, in the report's order."""
ANALYSIS, REPORTING = ["analysis", "beyond"], ["reporting", "beyond"]


def questions(models: tuple[str, ...]) -> Pipeline:
    """The questions' nodes (inside the namespace: ``model_comparisons_summary`` is the
    study's own; ``<model>.<dataset>`` every model's)."""
    return Pipeline([
        Node(func=nodes.check_same_setup, inputs=model_inputs(models),
             outputs="normalizations_summary", name="check_same_setup_node", tags=ANALYSIS),
        Node(func=nodes.answer_noise_question,
             inputs=["model_comparisons_summary", "normalizations_summary"],
             outputs="noise_question_summary", name="answer_noise_question_node", tags=ANALYSIS),
        Node(func=nodes.analyze_curvature,
             inputs={"normalizations": "normalizations_summary", "params": "params:beyond",
                     **model_inputs(models)},
             outputs=["curvature_table", "curvature_summary"], name="analyze_curvature_node",
             tags=ANALYSIS),
        Node(func=nodes.plot_noisy_shift,
             inputs=["activation_shift_table", "normalizations_summary", "params:reporting"],
             outputs="noisy_shift_figure", name="plot_noisy_shift_node", tags=REPORTING),
        Node(func=nodes.plot_curvature, inputs=["curvature_table", "curvature_summary"],
             outputs="curvature_figure", name="plot_curvature_node", tags=REPORTING),
        Node(func=beyond_report.noise_part, inputs=["noise_question_summary", "noisy_shift_figure"],
             outputs="noise_question_report_part", name="write_noise_section_node", tags=REPORTING),
        Node(func=beyond_report.lp_part, inputs=["model_comparisons_summary", "normalizations_summary"],
             outputs="lp_table_report_part", name="write_lp_section_node", tags=REPORTING),
        Node(func=beyond_report.curvature_part, inputs=["curvature_summary", "curvature_figure"],
             outputs="curvature_report_part", name="write_curvature_section_node", tags=REPORTING),
    ])


def create_pipeline(**kwargs) -> Pipeline:
    return study_with_questions(STUDY, questions, PARTS)
