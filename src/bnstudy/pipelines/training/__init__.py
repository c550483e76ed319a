"""``training``: one modular pipeline, instantiated as ``baseline`` and ``candidate``."""

from bnstudy.pipelines.training.pipeline import create_pipeline

__all__ = ["create_pipeline"]
