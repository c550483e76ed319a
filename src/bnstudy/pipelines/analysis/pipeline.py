"""Wiring of the ``analysis`` pipeline: one node per measurement."""

import warnings

from kedro.pipeline import Node, Pipeline

from bnstudy.pipelines.analysis import nodes

# measurement name -> (node function, per-model input datasets, takes params)
ANALYSES = {
    "training_curves": (nodes.analyze_training_curves, ["training_trace", "eval_trace"], True),
    "gradient_ics": (nodes.analyze_gradient_ics, ["ics_trace"], True),
    "loss_landscape": (nodes.analyze_loss_landscape, ["smoothness_trace"], True),
    "gradient_predictiveness": (nodes.analyze_gradient_predictiveness, ["smoothness_trace"], True),
    "beta_smoothness": (nodes.analyze_beta_smoothness, ["smoothness_trace"], True),
    "activation_shift": (nodes.analyze_activation_shift, ["activation_stats", "activation_histograms"], True),
    "init_distance": (nodes.analyze_init_distance, ["init_distance"], False),
}

# This pipeline reads both models' namespaced outputs (``baseline.*``, ``candidate.*``) by
# their full names, which is how Kedro addresses a namespace's outputs from outside it.
warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")


def create_pipeline(**kwargs) -> Pipeline:
    built = []
    for name, (func, per_model, takes_params) in ANALYSES.items():
        inputs = [f"{model}.{dataset}" for dataset in per_model for model in ("baseline", "candidate")]
        if takes_params:
            inputs.append("params:analysis")
        built.append(
            Node(
                func=func,
                inputs=inputs,
                outputs=[f"{name}_table", f"{name}_summary"],
                name=f"analyze_{name}_node",
                tags=["analysis"],
            )
        )
    comparison_inputs = ["training_trace", "eval_trace", "smoothness_trace", "ics_trace",
                         "activation_histograms", "init_distance"]
    built.append(
        Node(
            func=nodes.compare_models,
            inputs=[f"{model}.{dataset}" for dataset in comparison_inputs
                    for model in ("baseline", "candidate")] + ["params:analysis"],
            outputs={"model_comparisons_summary": "model_comparisons_summary",
                     "fidelity_summary": "fidelity_summary"},
            name="compare_models_node",
            tags=["analysis"],
        )
    )
    return Pipeline(built)
