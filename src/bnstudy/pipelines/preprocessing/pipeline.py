"""Wiring of the ``preprocessing`` pipeline."""

from kedro.pipeline import Node, Pipeline

from bnstudy.pipelines.preprocessing.nodes import compute_channel_stats, make_model_input


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=compute_channel_stats,
                inputs="cifar10_train_raw",
                outputs="channel_stats",
                name="compute_channel_stats_node",
                tags=["data"],
            ),
            Node(
                func=make_model_input,
                inputs=[
                    "cifar10_train_raw",
                    "channel_stats",
                    "params:preprocessing.train_size",
                    "params:preprocessing.seed",
                ],
                outputs="model_input_train",
                name="make_model_input_train_node",
                tags=["data"],
            ),
            Node(
                func=make_model_input,
                inputs=[
                    "cifar10_test_raw",
                    "channel_stats",
                    "params:preprocessing.test_size",
                    "params:preprocessing.seed",
                ],
                outputs="model_input_test",
                name="make_model_input_test_node",
                tags=["data"],
            ),
        ]
    )
