"""Wiring of the ``data_ingestion`` pipeline."""

from kedro.pipeline import Node, Pipeline

from bnstudy.pipelines.data_ingestion.nodes import ingest_cifar10


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=ingest_cifar10,
                inputs="params:data_ingestion",
                outputs=[
                    "cifar10_train_raw",
                    "cifar10_test_raw",
                    "cifar10_class_names",
                    "cifar10_provenance",
                ],
                name="ingest_cifar10_node",
                tags=["data"],
            )
        ]
    )
