"""Wiring of the ``training`` pipeline: one template, two namespaces.

``baseline`` and ``candidate`` run the same nodes on the same model input; their
parameters are ``params:baseline.*`` and ``params:candidate.*`` and their datasets
``baseline.*`` / ``candidate.*`` (catalog factory patterns ``{model}.*``). kedro-viz draws
each namespace as one collapsible box.
"""

from kedro.pipeline import Node, Pipeline

from bnstudy.pipelines.training.nodes import model_run_payload, train_model

MODELS = ("baseline", "candidate")
VARIANTS = ("candidate_noisy", "candidate_l1", "candidate_l2", "candidate_linf")
"""The models beyond the paper's pair (the ``beyond_study`` pipeline trains them)."""
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
                    "params:normalization",
                    "params:architecture",
                    "params:training",
                    "params:measurements",
                    "params:checkpoints",
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


def namespaced(models: tuple[str, ...]) -> Pipeline:
    """The template once per model, each in its own namespace, on the shared model input."""
    template = create_template()
    return sum(
        (
            Pipeline(template, namespace=model, inputs={"model_input_train", "model_input_test"})
            for model in models
        ),
        start=Pipeline([]),
    )


def create_pipeline(**kwargs) -> Pipeline:
    return namespaced(MODELS)
