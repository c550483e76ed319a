"""``analysis``: one node per measurement, both models' traces -> tidy table + summary."""

from bnstudy.pipelines.analysis.pipeline import create_pipeline

__all__ = ["create_pipeline"]
