"""Wiring of the ``linear_data`` pipeline: one node, the data of the deep linear network."""

from kedro.pipeline import Node, Pipeline

from bnstudy.pipelines.linear_data.nodes import make_linear_data

OUTPUTS = ["linear_input_train", "linear_input_test", "linear_data_provenance"]
"""The datasets it makes: what a ``data: linear_regression`` study trains on, and the Setup's
provenance of it."""


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(func=make_linear_data, inputs="params:linear_data", outputs=OUTPUTS,
             name="make_linear_data_node", tags=["data"]),
    ])
