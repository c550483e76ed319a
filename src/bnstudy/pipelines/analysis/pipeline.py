"""Wiring of the ``analysis`` pipeline: one node per measurement, over every model of a study.

Each node reads every model's traces of the study by their namespaced names
(``baseline.training_trace``, ...: how Kedro addresses a namespace's outputs from outside it)
as keyword inputs ``<trace>:<model>``, and the study's comparisons from the roster
(``params:studies.<study>.comparisons``).
"""

import warnings

from kedro.pipeline import Node, Pipeline

from bnstudy.pipelines.analysis import nodes
from bnstudy.roster import pipeline_roster

# measurement name -> (node function, its per-model traces)
ANALYSES = {
    "training_curves": (nodes.analyze_training_curves, ["training_trace", "eval_trace"]),
    "gradient_ics": (nodes.analyze_gradient_ics, ["ics_trace"]),
    "loss_landscape": (nodes.analyze_loss_landscape, ["smoothness_trace"]),
    "gradient_predictiveness": (nodes.analyze_gradient_predictiveness, ["smoothness_trace"]),
    "beta_smoothness": (nodes.analyze_beta_smoothness, ["smoothness_trace"]),
    "activation_shift": (nodes.analyze_activation_shift, ["activation_stats", "activation_histograms"]),
    "init_distance": (nodes.analyze_init_distance, ["init_distance"]),
}
COMPARED_TRACES = [*nodes.COMPARED.values(), "activation_histograms"]

warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")


def model_inputs(models: tuple[str, ...], traces: list[str]) -> dict[str, str]:
    """``{"<trace>:<model>": "<model>.<trace>"}`` for every model and trace."""
    return {f"{trace}{nodes.SEPARATOR}{model}": f"{model}.{trace}" for trace in traces for model in models}


def study_inputs(study: str, settings: str = "params:analysis") -> dict[str, str]:
    return {"params": settings, "comparisons": f"params:studies.{study}.comparisons"}


def create_pipeline(study: str = "full_study", settings: str = "params:analysis",
                    **kwargs) -> Pipeline:
    """The analysis of ``study``: every model it compares (the roster's ``compared_in``);
    ``settings``: the dataset of its ``analysis`` section (a study's merged one,
    :func:`bnstudy.pipelines.study.study_pipeline`)."""
    models = pipeline_roster().compared_in(study)
    built = [
        Node(func=func, inputs={**study_inputs(study, settings), **model_inputs(models, traces)},
             outputs=[f"{name}_table", f"{name}_summary"], name=f"analyze_{name}_node",
             tags=["analysis"])
        for name, (func, traces) in ANALYSES.items()
    ]
    built.append(Node(func=nodes.gradient_difference, inputs=model_inputs(models, ["probe_trace"]),
                      outputs="gradient_difference_table", name="analyze_gradient_difference_node",
                      tags=["analysis"]))
    built.append(Node(
        func=nodes.compare_models,
        inputs={**study_inputs(study, settings), "roster": "params:models",
                **model_inputs(models, COMPARED_TRACES)},
        outputs={"model_comparisons_summary": "model_comparisons_summary",
                 "fidelity_summary": "fidelity_summary"},
        name="compare_models_node", tags=["analysis"]))
    return Pipeline(built)
