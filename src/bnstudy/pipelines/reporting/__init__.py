"""``reporting``: the study's figures, its report (Markdown and HTML) and study-level metrics."""

from bnstudy.pipelines.reporting.pipeline import create_pipeline

__all__ = ["create_pipeline"]
