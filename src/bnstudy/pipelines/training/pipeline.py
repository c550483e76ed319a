"""Wiring of the ``training`` pipeline: one template, one namespace per model of the roster.

Every model runs the same nodes on the same model input. Its datasets are ``<model>.*``
(catalog factory patterns ``{model}.*``); its parameters are the shared sections
(``params:architecture``, ``params:training``, ...) and its roster entry
``params:models.<model>``, whose overrides the node merges over them. kedro-viz draws each
namespace as one collapsible box.
"""

from kedro.pipeline import Node, Pipeline

from bnstudy.pipelines.training.nodes import train_model
from bnstudy.roster import SHARED_SECTIONS, pipeline_roster
from bnstudy.tracking import model_run_payload

TRAINING_OUTPUTS = [
    "initial_state",
    "final_state",
    "training_trace",
    "eval_trace",
    "ics_trace",
    "probe_trace",
    "smoothness_trace",
    "activation_stats",
    "activation_histograms",
    "init_distance",
    "curvature_trace",
    "run_record",
]


def create_template() -> Pipeline:
    """The pipeline for one model, before namespacing."""
    return Pipeline(
        [
            Node(
                func=train_model,
                inputs=[
                    "model_input_train",
                    "model_input_test",
                    "params:model",
                    *(f"params:{section}" for section in SHARED_SECTIONS),
                    "mlflow_live",
                ],
                outputs={name: name for name in TRAINING_OUTPUTS},
                name="train_model_node",
                tags=["training"],
            ),
            Node(
                func=model_run_payload,
                inputs=[
                    "training_trace",
                    "eval_trace",
                    "smoothness_trace",
                    "ics_trace",
                    "initial_state",
                    "final_state",
                    "run_record",
                    "params:mlflow",
                    "curvature_trace",
                ],
                outputs="mlflow_run",
                name="log_model_run_node",
                tags=["training", "tracking"],
            ),
        ]
    )


SHARED_PARAMETERS = {f"params:{name}": f"params:{name}" for name in (*SHARED_SECTIONS, "mlflow")}
"""The parameters every namespace reads as they are (not prefixed with the namespace)."""


MODEL_INPUTS = {"cifar10": ("model_input_train", "model_input_test"),
                "linear_regression": ("linear_input_train", "linear_input_test")}
"""The training and test sets of each kind of data a study trains on (``studies.<s>.data``)."""


def namespaced(models: tuple[str, ...], data: str = "cifar10") -> Pipeline:
    """The template once per model, each in its own namespace, on the shared model input of
    ``data`` (:data:`MODEL_INPUTS`)."""
    template = create_template()
    train, test = MODEL_INPUTS[data]
    return sum(
        (
            Pipeline(template, namespace=model,
                     inputs={"model_input_train": train, "model_input_test": test},
                     parameters={**SHARED_PARAMETERS, "params:model": f"params:models.{model}"})
            for model in models
        ),
        start=Pipeline([]),
    )


def create_pipeline(study: str = "full_study", **kwargs) -> Pipeline:
    """The models that ``study`` of the roster trains, on the study's data."""
    roster = pipeline_roster()
    return namespaced(roster.trained_by(study), roster.data(study))
