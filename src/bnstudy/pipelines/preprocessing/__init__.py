"""``preprocessing``: per-channel standardization and optional stratified subsets."""

from bnstudy.pipelines.preprocessing.pipeline import create_pipeline

__all__ = ["create_pipeline"]
