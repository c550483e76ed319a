"""The sections beyond_study's questions add to its report: the noise question, the Lp table
and curvature against the stability thresholds, each a
:class:`~bnstudy.reporting.document.ReportPart`. The report itself (setup, the headline
comparison, a section per further comparison, caveats) is the general one,
:func:`bnstudy.reporting.report.build_report`. Pure Python.

Every statement comes from :mod:`bnstudy.analysis.beyond`'s summaries or the study's
comparisons: comparisons across seeds with their intervals and tests, never a single run's
medians.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bnstudy.analysis.beyond import comparisons_of, late_level
from bnstudy.analysis.study import model_word
from bnstudy.reporting.conclusions import main_preset
from bnstudy.reporting.document import ReportPart, Section, Table
from bnstudy.reporting.plotting import BAND_METHOD

LP_KINDS = ("batch", "l1", "l2", "linf")
"""The normalizations of the Lp table, in its order (BN's row first, for scale)."""


def noise_part(noise: Mapping[str, Any], figure: bytes) -> ReportPart:
    """The noise question (``noise``: :func:`bnstudy.analysis.beyond.noise_question`'s
    summary) and the paper's activation-shift plot (``figure``)."""
    paragraphs = [
        "After every BatchNorm layer, each step draws per channel mu ~ U(-0.5, 0.5) and "
        "sigma ~ U(1, 1.25), then per example and channel m ~ U(mu - 0.1, mu + 0.1) and "
        "s ~ N(sigma, 0.1^2), and replaces the output a by s a + m (training mode only). "
        "The question: does this noise raise the activation shift while BN's training "
        "advantage survives?",
        f"**Answer:** shift raised: {noise['shift_raised']}; BN's advantage: "
        f"{noise['advantage']}. {noise['statement']}"]
    if noise["asked"]:
        keys = ", ".join(f"`{key}`" for key in noise["comparisons"].values())
        paragraphs.append(f"The comparisons it reads ({keys}) are given in full below (the "
                          "headline comparison's sections and Further comparisons).")
    without = noise["without_bn"]
    if without is not None:
        paragraphs.append(f"**Noise without BN** (the paper: it \"prevents it from training "
                          f"entirely\"): trains: {without['trains']}. {without['statement']}")
    caption = ("The paper's activation-shift plot for the models of the noise question (no BN, "
               "BN, noisy BN, and noise without BN where the study has it): mean over channels "
               "of |delta mu| and |delta sigma^2| between consecutive activation snapshots, per "
               "layer. " + BAND_METHOD)
    section = Section("Noisy BatchNorm (Santurkar et al., Algorithm 1)", paragraphs=paragraphs,
                      figures=["noisy_shift"])
    return ReportPart([section], figures={"noisy_shift": figure}, captions={"noisy_shift": caption})


def lp_part(study_summary: Mapping[str, Any], normalizations: Mapping[str, str]) -> ReportPart:
    """The Lp table: each comparison of the study of a normalization of :data:`LP_KINDS`
    against no normalization, measure by measure (``study_summary``: the study's
    ``model_comparisons_summary``; ``normalizations``: ``{model: kind}``)."""
    title = "Lp normalizations (the paper's section 3.3)"
    found = [summary for kind in LP_KINDS
             for summary in comparisons_of(study_summary, normalizations, "none", kind)]
    if not any(normalizations[summary["treatment"]] != "batch" for summary in found):
        return ReportPart([Section(title, paragraphs=[
            "Not asked: the study compares no l1, l2 or linf model with a model without "
            "normalization (add such a pair to the study's comparisons in the roster)."])])
    preset = main_preset(found[0])
    measures = ("test_accuracy", f"{preset}/loss_range", f"{preset}/grad_diff_max",
                f"{preset}/beta_smoothness")
    rows = [[f"{model_word(summary['treatment'])} ({summary['treatment']})",
             *(_overall_text(summary, measure) for measure in measures)] for summary in found]
    table = Table(["normalization", *(f"{m} vs no BN" for m in measures)], rows)
    return ReportPart([Section(title, paragraphs=[
        "Each conv output is centred by its batch mean and divided by the batch's average L1 "
        "norm, root-mean-square (L2) or largest absolute value (L-infinity) per channel, then "
        "scaled and shifted by learned parameters; BN divides by the standard deviation. Each "
        "row: that normalization against no BN, paired by seed (ratios or differences, 95% t "
        "intervals); each against BN, and every measure, under Further comparisons; the "
        "training curves of every model are the Training section's figure."],
        tables=[("Normalizations against no BN", table)])])


def _overall_text(summary: Mapping[str, Any], measure: str) -> str:
    found = summary.get("measures", {}).get(measure)
    return "not measured" if found is None else found["overall"]["text"]


def curvature_part(curvature: Mapping[str, Any], figure: bytes) -> ReportPart:
    """Every model's curvature against the stability thresholds (``curvature``:
    :func:`bnstudy.analysis.beyond.curvature_analysis`'s summary), its figure, and each
    model's late means as MLflow metrics (``<model>/<quantity>_late``)."""
    caption = ("Top Hessian eigenvalue and batch sharpness against the step, with the "
               "thresholds 2/eta, 2(1-beta)/eta and 2(1+beta)/eta, and Hutchinson's "
               "estimate of the Hessian trace where it was measured. " + BAND_METHOD)
    metrics = {f"{model}/{metric}_late": float(entry["late_mean"])
               for model, entries in curvature["models"].items()
               for metric, entry in entries.items()
               if entry["late_mean"] is not None and math.isfinite(entry["late_mean"])}
    return ReportPart([curvature_section(curvature)], figures={"curvature": figure},
                      captions={"curvature": caption}, metrics=metrics)


def curvature_section(curvature: Mapping[str, Any]) -> Section:
    if not curvature.get("measured"):
        return Section("Curvature against the stability thresholds",
                       paragraphs=[curvature.get("statement", "Curvature was not measured.")])
    limits = ", ".join(f"{name} = {value:.1f}" for name, value in curvature["thresholds"].items())
    rows = []
    for model, metrics in curvature["models"].items():
        for metric, entry in metrics.items():
            reached = "; ".join(
                f"{name}: " + ("never" if found["first_step"] is None else
                               f"step {found['first_step']}" + (" (stays)" if found["stays"] else
                                                                f" ({found['fraction_after']:.0%} after)"))
                for name, found in entry["thresholds"].items()) or "no threshold (a sum of eigenvalues)"
            level = late_level(entry)
            rows.append([model_word(model), metric.replace("_", " "), level, reached])
    return Section(
        "Curvature against the stability thresholds",
        paragraphs=[
            "lambda_max: the top eigenvalue of the Hessian of the training loss on a fixed probe "
            "set (power iteration on Hessian-vector products, train-mode BN). Batch sharpness: "
            "g^T H_B g / ||g||^2 on the step's own batch (Andreyev & Beneventano, 2024). "
            f"Thresholds at the run's learning rate and momentum: {limits} (Cohen et al. 2021: "
            "2/eta; with momentum beta, plateaus near 2(1-beta)/eta at small batch and "
            f"2(1+beta)/eta at large batch). 'Within' means within {curvature['near']:.0%}.",
            ("Hessian trace: Hutchinson's estimate on the same probe set, the mean of v^T H v "
             "over Rademacher vectors v (each measurement's standard error is in "
             "curvature_trace); it sums every eigenvalue, so it has no stability threshold."
             if curvature.get("trace_measured") else
             "Hessian trace: not estimated (training.curvature_trace_samples is 0).")],
        bullets=list(curvature["statements"]), figures=["curvature"],
        tables=[("Late curvature and threshold crossings",
                 Table(["model", "quantity", "last third: mean [95% CI]",
                        "first step within (of the seed mean)"], rows))])
