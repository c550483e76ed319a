"""``linear_data``: the deep linear network's synthetic regression (x ~ N(0, I), y = A x)."""

from bnstudy.pipelines.linear_data.pipeline import create_pipeline

__all__ = ["create_pipeline"]
