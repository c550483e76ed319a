"""Wiring of the ``reporting`` pipeline: one node per figure, then the report.

The line figures draw every model of the study from the analysis's tidy tables; the
activation-histogram figures draw the headline comparison's pair side by side. Per-model
inputs are the models' results, keyword inputs ``results:<model>`` (<- ``<model>.results``).
A study's own questions add to the report as ``part:<question>`` inputs (``<question>_report_part``,
a :class:`~bnstudy.reporting.document.ReportPart`), so the report is always this one.
"""

import warnings
from collections.abc import Sequence

from kedro.pipeline import Node, Pipeline

from bnstudy.pipelines.analysis.pipeline import model_inputs
from bnstudy.pipelines.reporting import nodes
from bnstudy.roster import pipeline_roster

warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")

TABLE_FIGURES = {
    "training_curves": nodes.plot_training_curves,
    "loss_landscape": nodes.plot_loss_landscape,
    "gradient_predictiveness": nodes.plot_gradient_predictiveness,
    "gradient_difference": nodes.plot_gradient_difference,
    "beta_smoothness": nodes.plot_beta_smoothness,
    "init_distance": nodes.plot_init_distance,
    "activation_shift": nodes.plot_activation_shift,
}
"""Figures drawn from their measurement's ``<name>_table`` alone."""
HISTOGRAM_FIGURES = {
    "activation_histograms": nodes.plot_activation_histograms,
    # saved beside the report (data/08_reporting/figures/, MLflow figures/), not embedded in it
    "activation_histograms_full": nodes.plot_activation_histograms_full,
    "activation_final_snapshot": nodes.plot_activation_final_snapshot,
    "activation_animation": nodes.animate_activations,
}


def create_pipeline(study: str = "full_study", parts: Sequence[str] = (),
                    settings: str = "params:reporting", provenance: str = "cifar10_provenance",
                    data_parameters: str = "params:preprocessing", **kwargs) -> Pipeline:
    """The figures and the report of ``study``; ``parts``: the questions of the study's own
    whose :class:`~bnstudy.reporting.document.ReportPart` (the dataset ``<question>_report_part``)
    the report adds (``pipelines/beyond_study``). ``settings``: the dataset of its
    ``reporting`` section; ``provenance`` and ``data_parameters``: what its Setup says of the
    data (CIFAR-10's by default; :data:`bnstudy.pipelines.study.DATA_SETUP`)."""
    models = pipeline_roster().compared_in(study)
    comparisons = f"params:studies.{study}.comparisons"
    built = [Node(func=func, inputs=f"{name}_table", outputs=f"{name}_figure", name=f"plot_{name}_node",
                  tags=["reporting"]) for name, func in TABLE_FIGURES.items()]
    built.append(Node(func=nodes.plot_gradient_ics,
                      inputs={"table": "gradient_ics_table", "params": settings,
                              **model_inputs(models)},
                      outputs="gradient_ics_figure", name="plot_gradient_ics_node", tags=["reporting"]))
    built += [Node(func=func, inputs={"params": settings, "comparisons": comparisons,
                                      **model_inputs(models)},
                   outputs=f"{name}_figure", name=f"plot_{name}_node", tags=["reporting"])
              for name, func in HISTOGRAM_FIGURES.items()]
    built.append(Node(
        func=nodes.write_report,
        inputs={"params": settings, "model_comparisons": "model_comparisons_summary", "fidelity": "fidelity_summary",
                "provenance": provenance, "preprocessing": data_parameters,
                **model_inputs(models),
                **{f"figure:{name}": f"{name}_figure" for name in nodes.FIGURE_NAMES},
                **{f"part:{name}": f"{name}_report_part" for name in parts}},
        outputs=["study_report_md", "study_report_html", "study_metrics", "study_note"],
        name="write_report_node", tags=["reporting"]))
    return Pipeline(built)
