"""Wiring of the ``data_ingestion`` pipeline."""

from kedro.pipeline import Node, Pipeline

from bnstudy.pipelines.data_ingestion.nodes import ingest_cifar10


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=ingest_cifar10,
                # preprocessing's subset sizes and seed: with data_ingestion.subset_only, only
                # the images preprocessing will keep are read.
                inputs=["params:data_ingestion", "params:preprocessing"],
                outputs=["cifar10_raw_cache", "cifar10_class_names", "cifar10_provenance"],
                name="ingest_cifar10_node",
                tags=["data"],
            )
        ]
    )
