"""``beyond_study``: noisy BatchNorm, the Lp normalizations and curvature, after ``full_study``."""

from bnstudy.pipelines.beyond_study.pipeline import create_pipeline

__all__ = ["create_pipeline"]
