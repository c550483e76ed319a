"""``dln_study``: the deep linear network with and without BatchNorm (the paper's second
testbed), with its top Hessian eigenvalue against 2/eta at each learning rate."""

from bnstudy.pipelines.dln_study.pipeline import create_pipeline

__all__ = ["create_pipeline"]
