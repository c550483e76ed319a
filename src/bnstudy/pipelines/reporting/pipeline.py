"""Wiring of the ``reporting`` pipeline: one node per figure, then the report."""

import warnings

from kedro.pipeline import Node, Pipeline

from bnstudy.pipelines.reporting import nodes

MODELS = ("baseline", "candidate")

# This pipeline reads both models' namespaced outputs (``baseline.*``, ``candidate.*``) by
# their full names, which is how Kedro addresses a namespace's outputs from outside it.
warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")

HISTOGRAMS = [f"{m}.activation_histograms" for m in MODELS]
STATS = [f"{m}.activation_stats" for m in MODELS]
# The run records name the run's seeds and which diverged (the histogram figures show the
# first seed healthy in both models).
RECORDS = [f"{m}.run_record" for m in MODELS]


def create_pipeline(**kwargs) -> Pipeline:
    single = {
        "training_curves": (nodes.plot_training_curves, ["training_curves_table"]),
        "gradient_ics": (nodes.plot_gradient_ics,
                         ["gradient_ics_table", *RECORDS, "params:reporting"]),
        "loss_landscape": (nodes.plot_loss_landscape, ["loss_landscape_table"]),
        "gradient_predictiveness": (nodes.plot_gradient_predictiveness, ["gradient_predictiveness_table"]),
        "beta_smoothness": (nodes.plot_beta_smoothness, ["beta_smoothness_table"]),
        "init_distance": (nodes.plot_init_distance, ["init_distance_table"]),
        "activation_shift": (nodes.plot_activation_shift, ["activation_shift_table"]),
        "activation_histograms": (nodes.plot_activation_histograms, [*HISTOGRAMS, *RECORDS, "params:reporting"]),
        "activation_final_snapshot": (nodes.plot_activation_final_snapshot,
                                      [*HISTOGRAMS, *STATS, *RECORDS, "params:reporting"]),
        "activation_animation": (nodes.animate_activations, [*HISTOGRAMS, *STATS, *RECORDS, "params:reporting"]),
    }
    figure_nodes = [
        Node(func=func, inputs=inputs, outputs=f"{name}_figure", name=f"plot_{name}_node", tags=["reporting"])
        for name, (func, inputs) in single.items()
    ]
    report_node = Node(
        func=nodes.write_report,
        inputs=[f"{m}.run_record" for m in MODELS]
        + ["params:reporting", "model_comparisons_summary", "fidelity_summary", "cifar10_provenance",
           "params:preprocessing"]
        + [f"{name}_figure" for name in nodes.FIGURE_NAMES],
        outputs=["study_report_md", "study_report_html", "study_metrics"],
        name="write_report_node",
        tags=["reporting"],
    )
    return Pipeline([*figure_nodes, report_node])
