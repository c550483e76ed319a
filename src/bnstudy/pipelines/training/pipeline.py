"""Wiring of the ``training`` pipeline: one template, one namespace per model of the roster.

Every model runs the same nodes on the same model input. Its datasets are ``<model>.*``
(catalog factory patterns ``{model}.*``); its parameters are the shared sections
(``params:architecture``, ``params:training``, ...) and its roster entry
``params:models.<model>``, whose overrides the node merges over them.

Two nodes: the training writes the model's outputs (:data:`TRAINING_OUTPUTS` and its MLflow
run), and ``collect_results_node`` reads them all and writes ``<model>.results``, the one
dataset that everything outside the namespace reads (a manifest that pins each output's
version, :class:`~bnstudy.datasets.ModelResultsDataset`). So every output but that one is
internal to the namespace, and kedro-viz draws a collapsed model as one box with one output.
"""

from kedro.pipeline import Node, Pipeline

from bnstudy.pipelines.training.nodes import collect_results, train_and_track
from bnstudy.roster import SHARED_SECTIONS, pipeline_roster

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
    """The pipeline for one model, before namespacing: the node that trains the model and
    logs its MLflow run (:func:`train_and_track`), and the node that collects its outputs into
    ``results`` (:func:`collect_results`)."""
    return Pipeline(
        [
            Node(
                func=train_and_track,
                inputs={
                    "model_input_train": "model_input_train",
                    "model_input_test": "model_input_test",
                    "model": "params:model",
                    **{section: f"params:{section}" for section in SHARED_SECTIONS},
                    "mlflow": "params:mlflow",
                    "imported": "params:imported_runs",
                    "live": "mlflow_live",
                },
                outputs={name: name for name in (*TRAINING_OUTPUTS, "mlflow_run")},
                name="train_model_node",
                tags=["training", "tracking"],
            ),
            Node(
                func=collect_results,
                inputs={name: name for name in (*TRAINING_OUTPUTS, "mlflow_run")},
                outputs="results",
                name="collect_results_node",
                tags=["training"],
            ),
        ]
    )


SHARED_PARAMETERS = {f"params:{name}": f"params:{name}"
                     for name in (*SHARED_SECTIONS, "mlflow", "imported_runs")}
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
