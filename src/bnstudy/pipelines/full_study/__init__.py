"""``full_study``: the whole study, from the raw archive to the report."""

from bnstudy.pipelines.full_study.pipeline import create_pipeline

__all__ = ["create_pipeline"]
