"""One caption per figure: what is drawn, which interval the bands are, which seed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from bnstudy.reporting.histograms import RANGE_PAD, RANGE_QUANTILES
from bnstudy.reporting.plotting import BAND_METHOD, MODEL_NAMES

ERROR_BARS = "mean across seeds with 95% Student-t error bars (none with one seed)"
HISTOGRAM_RANGE = (f"x-range per layer from the data: the {RANGE_QUANTILES[0]:.1%}-{RANGE_QUANTILES[1]:.1%} quantiles "
                   f"of that layer's values pooled over every snapshot of both models, padded by {RANGE_PAD:.0%}, "
                   "the same in every panel")


def _one_seed(seed: int | None) -> str:
    return (f"One seed, the first ({seed}): histograms are not averaged across seeds." if seed is not None
            else "One run.")


def _omitted(zero: Mapping[str, Iterable[tuple[str, str]]]) -> str:
    named = [f"{layer} in the {preset} protocol {MODEL_NAMES.get(model, model)}"
             for model, pairs in zero.items() for preset, layer in sorted(pairs)]
    if not named:
        return "No ICS value is zero by definition here."
    return ("Not drawn, as zero by definition (the first layer, where only the preceding layers' update could "
            f"change the gradient and none precede it): {'; '.join(named)}; the panels say so.")


SWEPT_FIGURES = ("training_curves", "gradient_ics", "loss_landscape", "gradient_predictiveness",
                 "beta_smoothness", "init_distance", "activation_shift")
"""The figures drawn from a table at a sweep's first learning rate (``reporting.nodes._drawn``)."""


GEOMETRY = (
    "Each layer's kernel against its initialization at the end of training: the distance "
    "||W - W_0||_F, that relative to ||W_0||_F, the angle between W and W_0, the growth of the "
    "norm ||W|| / ||W_0||, the effective learning rate lr / ||W||^2 (the step a kernel that a "
    "normalization makes scale-invariant takes in direction; momentum left out) and, at the last "
    "snapshot (the end has no batch), a normalization layer's |gamma| / sigma, the factor it "
    "applies to the centred conv output (layers without one have none):")
"""The init-distance figure's caption, before its error bars and seeds."""


FULL_GRID = ("The grid of every layer is the figure `activation_histograms_full` (data/08_reporting/figures/, "
             "and figures/ of the study's MLflow run).")


def figure_captions(seeds: Sequence[int], zero_panels: Mapping[str, Iterable[tuple[str, str]]] | None = None,
                    *, regression: bool = False, sweep_rate: float | None = None) -> dict[str, str]:
    """Caption of every figure of the report, by figure name.

    Args:
        seeds: The run's seeds in order (the histogram figures show the first).
        zero_panels: per model, the ``(preset, layer)`` ICS values not drawn as zero by definition.
        regression, sweep_rate: the DLN's losses-only curves; a sweep's drawn rate.
    """
    first = seeds[0] if seeds else None
    count = f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))})"
    captions = {
        "training_curves": (
            "Training loss (the l2 loss of the full batch, log axis) and test loss on the held-out samples "
            f"(log axis), against the step: a regression has no accuracy. {BAND_METHOD} {count}."
            if regression else
            "Training loss of each step's batch (log axis), training accuracy on the batch after the update, "
            f"and test accuracy on the full test set, against the step. {BAND_METHOD} "
            f"{count}."),
        "activation_histograms": (
            "Pre-activation histograms of the chosen layers (rows; `reporting.histogram_layers`) at snapshots "
            "evenly spaced in steps (columns), without BatchNorm (blue) and with it (red), on the same batch. "
            f"{HISTOGRAM_RANGE}. {_one_seed(first)} {FULL_GRID}"),
        "activation_final_snapshot": (
            "Pre-activation histogram of every layer at the final snapshot, both models; the legend gives each "
            f"model's mean ± standard deviation of the layer's activations there. {HISTOGRAM_RANGE}. "
            f"{_one_seed(first)}"),
        "activation_animation": (
            "Animation (GIF) of the pre-activation histograms over every snapshot, as in the blog; the legend gives "
            f"each model's mean ± standard deviation. Axis limits fixed per layer for all frames; {HISTOGRAM_RANGE}. "
            f"{_one_seed(first)}"),
        "activation_shift": (
            "Activation shift in the sense of Ioffe and Szegedy: |delta mu| and |delta sigma^2| of each channel's "
            "pre-activation between consecutive snapshots, averaged over channels; per seed the median over "
            f"snapshots, then the {ERROR_BARS}. Log axis. {count}."),
        "gradient_ics": (
            "Gradient internal covariate shift (Santurkar et al., Def. 2.1) per layer: L2 distance (log axis) and "
            "cosine between the layer's gradient before and after the preceding layers' update, one column pair "
            f"per protocol. {BAND_METHOD} {_omitted(zero_panels or {})} {count}."),
        "loss_landscape": (
            "Loss landscape (Santurkar et al., Fig. 4a): at each measured step, the loss at step sizes s along the "
            "gradient. Top: the band from the minimum to the maximum over s (means across seeds). Bottom: the "
            f"range (max - min). {BAND_METHOD} Lower is smoother. One column per protocol; {count}."),
        "gradient_predictiveness": (
            "Gradient predictiveness (Santurkar et al., Fig. 4b): ||grad L(W(s)) - g_t||, the change of the "
            "gradient along the gradient direction. Top: the band from the minimum to the maximum over s (means "
            f"across seeds). Bottom: its maximum over s. {BAND_METHOD} Lower is more predictive. {count}."),
        "gradient_difference": (
            "Gradient difference against distance (Santurkar et al., Fig. 11): at each measured step (one line, "
            "coloured by the step) the change of the gradient, ||grad L(W(s)) - g_t||, against the distance "
            "moved along it, s lr ||g_t||; both averaged over the seeds at each s. A steeper curve is a less "
            "predictive gradient. One panel per model, protocol and learning rate; the panels of a row share "
            f"one y-scale, logarithmic where the row's values span more than a factor 100; {count}."),
        "beta_smoothness": (
            "Effective beta-smoothness (Santurkar et al., Fig. 4c): the largest gradient change per unit of "
            f"distance along the gradient at each measured step. {BAND_METHOD} Log axis; one panel per protocol. "
            f"{count}."),
        "init_distance": f"{GEOMETRY} {ERROR_BARS}. {count}.",
    }
    return with_sweep_rate(captions, sweep_rate)


def with_sweep_rate(captions: dict[str, str], sweep_rate: float | None) -> dict[str, str]:
    """``captions`` with the rate the line figures of a learning-rate sweep are drawn at
    (:func:`bnstudy.pipelines.reporting.nodes.at_first_rate`) named in theirs."""
    if sweep_rate is not None:
        for name in SWEPT_FIGURES:
            captions[name] += (f" Learning-rate sweep: at lr {sweep_rate:g}, the sweep's first rate (each "
                               "other rate's numbers are under Further comparisons).")
    return captions
