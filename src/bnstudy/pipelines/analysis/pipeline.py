"""Wiring of the ``analysis`` pipeline: one node per measurement, over every model of a study.

Each node reads every model's results of the study (``baseline.results``: the one output of a
model's namespace, :class:`~bnstudy.datasets.ModelResultsDataset`) as keyword inputs
``results:<model>``, and the study's comparisons from the roster
(``params:studies.<study>.comparisons``); it reads the traces it needs from those results.
"""

import warnings

from kedro.pipeline import Node, Pipeline

from bnstudy.pipelines.analysis import nodes
from bnstudy.roster import pipeline_roster

# measurement name -> its node function
ANALYSES = {
    "training_curves": nodes.analyze_training_curves,
    "gradient_ics": nodes.analyze_gradient_ics,
    "loss_landscape": nodes.analyze_loss_landscape,
    "gradient_predictiveness": nodes.analyze_gradient_predictiveness,
    "beta_smoothness": nodes.analyze_beta_smoothness,
    "activation_shift": nodes.analyze_activation_shift,
    "init_distance": nodes.analyze_init_distance,
}

warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")


def model_inputs(models: tuple[str, ...]) -> dict[str, str]:
    """``{"results:<model>": "<model>.results"}`` for every model."""
    return {f"{nodes.RESULTS}{nodes.SEPARATOR}{model}": f"{model}.{nodes.RESULTS}" for model in models}


def study_inputs(study: str, settings: str = "params:analysis") -> dict[str, str]:
    return {"params": settings, "comparisons": f"params:studies.{study}.comparisons"}


def create_pipeline(study: str = "full_study", settings: str = "params:analysis",
                    **kwargs) -> Pipeline:
    """The analysis of ``study``: every model it compares (the roster's ``compared_in``);
    ``settings``: the dataset of its ``analysis`` section (a study's merged one,
    :func:`bnstudy.pipelines.study.study_pipeline`)."""
    models = pipeline_roster().compared_in(study)
    built = [
        Node(func=func, inputs={**study_inputs(study, settings), **model_inputs(models)},
             outputs=[f"{name}_table", f"{name}_summary"], name=f"analyze_{name}_node",
             tags=["analysis"])
        for name, func in ANALYSES.items()
    ]
    built.append(Node(func=nodes.gradient_difference, inputs=model_inputs(models),
                      outputs="gradient_difference_table", name="analyze_gradient_difference_node",
                      tags=["analysis"]))
    built.append(Node(
        func=nodes.compare_models,
        inputs={**study_inputs(study, settings), "roster": "params:models",
                **model_inputs(models)},
        outputs={"model_comparisons_summary": "model_comparisons_summary",
                 "fidelity_summary": "fidelity_summary"},
        name="compare_models_node", tags=["analysis"]))
    return Pipeline(built)
