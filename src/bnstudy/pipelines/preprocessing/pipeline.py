"""Wiring of the ``preprocessing`` pipeline."""

from kedro.pipeline import Node, Pipeline

from bnstudy.pipelines.preprocessing.nodes import (
    compute_channel_stats,
    load_raw_arrays,
    make_model_input_test,
    make_model_input_train,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=load_raw_arrays,
                inputs=["cifar10_raw_cache", "cifar10_provenance"],
                outputs=["cifar10_train_raw", "cifar10_test_raw"],
                name="load_raw_arrays_node",
                tags=["data"],
            ),
            Node(
                func=compute_channel_stats,
                inputs="cifar10_train_raw",
                outputs="channel_stats",
                name="compute_channel_stats_node",
                tags=["data"],
            ),
            Node(
                func=make_model_input_train,
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
                func=make_model_input_test,
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
