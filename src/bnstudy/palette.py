"""One look per model, the single source of its legend label and colour: every figure
(:mod:`bnstudy.reporting.plotting` re-exports these), the model's MLflow run
(``mlflow.runColor``, the tag MLflow 3's UI draws a run's colour from) and the notebook.
No plotting library is imported here, so the tracking datasets can use it.
"""

from __future__ import annotations

import zlib

MODEL_LABELS = {"baseline": "Without BatchNorm", "candidate": "With BatchNorm"}
MODEL_NAMES = {"baseline": "without BatchNorm", "candidate": "with BatchNorm"}  # in a sentence
MODEL_COLORS = {"baseline": "#1f77b4", "candidate": "#d62728"}
# The other models of conf/base's roster (the beyond-the-paper variants).
VARIANT_LABELS = {**MODEL_LABELS, "candidate_noisy": "Noisy BatchNorm",
                  "candidate_l1": "L1 normalization", "candidate_l2": "L2 normalization",
                  "candidate_linf": "L-infinity normalization",
                  "baseline_noisy": "Algorithm 1's noise without BatchNorm",
                  "baseline_sgd": "Without BatchNorm (plain SGD, lr 0.1)",
                  "candidate_sgd": "With BatchNorm (plain SGD, lr 0.1)",
                  "dln_baseline": "Deep linear network without BatchNorm",
                  "dln_candidate": "Deep linear network with BatchNorm",
                  "dln_l1": "Deep linear network, L1 normalization",
                  "dln_l2": "Deep linear network, L2 normalization",
                  "dln_linf": "Deep linear network, L-infinity normalization",
                  "baseline_sweep": "Without BatchNorm (plain SGD)",
                  "candidate_sweep": "With BatchNorm (plain SGD)",
                  "baseline_sweep_blog": "Without BatchNorm (SGD, momentum 0.9)",
                  "candidate_sweep_blog": "With BatchNorm (SGD, momentum 0.9)"}
# The paper-optimizer pair in lighter shades of the blog pair's hues.
VARIANT_COLORS = {**MODEL_COLORS, "candidate_noisy": "#ff7f0e", "candidate_l1": "#2ca02c",
                  "candidate_l2": "#9467bd", "candidate_linf": "#8c564b",
                  "baseline_noisy": "#e377c2", "baseline_sgd": "#6baed6", "candidate_sgd": "#fc9272",
                  # the deep linear network's models in darker shades of the VGG's hues
                  "dln_baseline": "#08519c", "dln_candidate": "#a50f15", "dln_l1": "#006d2c",
                  "dln_l2": "#54278f", "dln_linf": "#5a3a1e",
                  # the learning-rate sweep's: the blog pair's hues, lighter for the blog's grid
                  "baseline_sweep": "#3182bd", "candidate_sweep": "#de2d26",
                  "baseline_sweep_blog": "#9ecae1", "candidate_sweep_blog": "#fcae91"}
# Any other model of a roster: a colour of its own, the same in every figure and run.
OTHER_COLORS = ("#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#8c6d31",
                "#843c39", "#7b4173", "#3182bd")


def model_label(model: str) -> str:
    """How a legend names a model: conf/base's models by what they are, others by name."""
    return VARIANT_LABELS.get(model, model)


def model_color(model: str) -> str:
    """One fixed colour per model name (a stable hash for names outside conf/base's roster)."""
    return VARIANT_COLORS.get(model) or OTHER_COLORS[zlib.crc32(model.encode()) % len(OTHER_COLORS)]


# The study's own (parent) MLflow run: a dark grey, apart from every model's colour.
STUDY_RUN_COLOR = "#4d4d4d"
