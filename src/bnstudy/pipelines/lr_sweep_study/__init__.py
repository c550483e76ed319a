"""``lr_sweep_study``: both models over a grid of learning rates x seeds on the learning-rate
axis (the paper's Figs 1 and 3), with the sweep's own question: where each model trains
stably, and whether BN's advantage holds across the grid."""

from bnstudy.pipelines.lr_sweep_study.pipeline import create_pipeline

__all__ = ["create_pipeline"]
