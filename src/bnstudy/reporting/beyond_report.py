"""The beyond-the-paper report: noisy BatchNorm, the Lp normalizations and curvature against
the stability thresholds. Pure Python; rendered by :mod:`bnstudy.reporting.document`.

Every statement comes from :mod:`bnstudy.analysis.beyond`'s summaries: comparisons across
seeds with their intervals and tests, never a single run's medians.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bnstudy.analysis.beyond import late_level
from bnstudy.analysis.study import MODEL_WORDS
from bnstudy.reporting import conclusions as words
from bnstudy.reporting.conclusions import comparison_table
from bnstudy.reporting.document import Report, Section, Table
from bnstudy.reporting.plotting import BAND_METHOD
from bnstudy.reporting.provenance import setup_table

BEYOND_FIGURES = ("noisy_shift", "normalizations", "curvature")
"""The report's figures, in the order of the report node's positional inputs."""

def noise_section(comparisons: Mapping[str, Any]) -> Section:
    noise = comparisons["noise"]
    return Section(
        "Noisy BatchNorm (Santurkar et al., Algorithm 1)",
        paragraphs=[
            "After every BatchNorm layer, each step draws per channel mu ~ U(-0.5, 0.5) and "
            "sigma ~ U(1, 1.25), then per example and channel m ~ U(mu - 0.1, mu + 0.1) and "
            "s ~ N(sigma, 0.1^2), and replaces the output a by s a + m (training mode only). "
            "The question: does this noise raise the activation shift while BN's training "
            "advantage survives?",
            f"**Answer:** shift raised: {noise['shift_raised']}; BN's advantage: "
            f"{noise['advantage']}. {noise['statement']}"],
        figures=["noisy_shift"],
        tables=[("Noisy BN against BN", comparison_table(comparisons["vs_bn"]["candidate_noisy"])),
                ("Noisy BN against no BN",
                 comparison_table(comparisons["vs_baseline"]["candidate_noisy"]))])


def lp_section(comparisons: Mapping[str, Any]) -> tuple[Section, list[Section]]:
    rows = comparisons["lp"]
    measures = [key for key in rows[0] if key not in ("model", "name")] if rows else []
    table = Table(["normalization", *(f"{m} vs no BN" for m in measures)],
                  [[row["name"], *(row[m] for m in measures)] for row in rows])
    against_bn = [Section(f"{MODEL_WORDS[variant]} against BN", level=3,
                          tables=[("Every measure, paired by seed",
                                   comparison_table(comparisons["vs_bn"][variant]))])
                  for variant in ("candidate_l1", "candidate_l2", "candidate_linf")
                  if variant in comparisons["vs_bn"]]
    section = Section(
        "Lp normalizations (the paper's section 3.3)",
        paragraphs=["Each conv output is centred by its batch mean and divided by the batch's "
                    "average L1 norm, root-mean-square (L2) or largest absolute value "
                    "(L-infinity) per channel, then scaled and shifted by learned parameters; "
                    "BN divides by the standard deviation. Each row: that normalization "
                    "against no BN, paired by seed (ratios or differences, 95% t intervals)."],
        figures=["normalizations"], tables=[("Normalizations against no BN", table)])
    return section, against_bn


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
            rows.append([MODEL_WORDS.get(model, model), metric.replace("_", " "), level, reached])
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


def build_beyond_report(comparisons: Mapping[str, Any], curvature: Mapping[str, Any],
                        records: Mapping[str, Mapping[str, Any]], provenance: Mapping[str, Any],
                        preprocessing: Mapping[str, Any], params: Mapping[str, Any]) -> Report:
    """The whole beyond-the-paper report (``records``: every model's run record)."""
    seeds = records["candidate"].get("seeds", [])
    setup = setup_table(provenance, preprocessing, records, params.get("environment", "?"))
    setup.rows.append(["models", "; ".join(
        f"{name}: {record['model_config']['normalization']}" for name, record in records.items())])
    lp, lp_against_bn = lp_section(comparisons)
    sections = [Section("Setup (provenance)", tables=[("Setup", setup)]),
                noise_section(comparisons), lp, *lp_against_bn, curvature_section(curvature)]
    captions = {
        "noisy_shift": "The paper's activation-shift plot for no BN, BN and noisy BN: mean over "
                       "channels of |delta mu| and |delta sigma^2| between consecutive activation "
                       "snapshots, per layer. " + BAND_METHOD,
        "normalizations": "Training loss (moving average) and test accuracy of every model. "
                          + BAND_METHOD,
        "curvature": "Top Hessian eigenvalue and batch sharpness against the step, with the "
                     "thresholds 2/eta, 2(1-beta)/eta and 2(1+beta)/eta, and Hutchinson's "
                     "estimate of the Hessian trace where it was measured. " + BAND_METHOD,
    }
    caveats = words.seed_caveats(seeds)
    if len(seeds) >= 2:
        caveats[0] = (f"**{len(seeds)} seeds** ({words.seed_list(seeds)}). Each comparison pairs a "
                      "model with its reference (no BN or BN) seed by seed and gives the "
                      "geometric-mean ratio model / reference (or the mean difference) with its "
                      "95% t interval and a paired t-test; 'significant' means p < 0.05.")
    return Report(title="Beyond the paper: noisy BatchNorm, Lp normalizations and curvature "
                        "(a bnstudy report)",
                  caveats=caveats, sections=sections, captions=captions)
