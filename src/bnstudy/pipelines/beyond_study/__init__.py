"""``beyond_study``: the general study pipeline over the roster's longer study, and the
questions only it asks (noisy BatchNorm, the Lp table, curvature)."""

from bnstudy.pipelines.beyond_study.pipeline import create_pipeline

__all__ = ["create_pipeline"]
