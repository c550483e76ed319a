"""The study's comparisons of BN against no BN, measure by measure, and the Fidelity table
that sets each claim of the paper and of the blog against this run."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from bnstudy.analysis import comparisons as cmp
from bnstudy.analysis import statistics as st
from bnstudy.analysis.tables import seed_channel_shift, with_norm_growth

LOWER, HIGHER = ("lower for BN", "higher for BN")


def _long(frames: Mapping[str, pd.DataFrame], value: str, extra: tuple[str, ...] = ()):
    return pd.concat([frame.assign(model=model)[["model", "seed", "step", *extra]]
                      .assign(value=frame[value].to_numpy()) for model, frame in frames.items()],
                     ignore_index=True)


def _with_grad_norm(frames, smoothness):
    """Attach each (model, seed, preset, step)'s ||g_t|| from the smoothness trace."""
    norms = {m: s[["seed", "preset", "step", "grad_norm"]] for m, s in smoothness.items()}
    return {m: f.merge(norms[m], on=["seed", "preset", "step"], how="left")
            for m, f in frames.items()}


def _ics_layers(ics: Mapping[str, pd.DataFrame], preset: str, column: str):
    """Per (seed, step) geometric mean (L2) or mean (cosine) over the layers above the first
    (conv_0, linear_0: its train-mode ICS is 0 by definition, so it is left out)."""
    out = {}
    for model, frame in ics.items():
        first = frame["layer"].iloc[0] if len(frame) else None  # the traces list layers in order
        part = frame[(frame["param"] == "all") & (frame["preset"] == preset)
                     & (frame["layer"] != first)]
        if column == "ics_l2":
            value = part.assign(log=np.log(part[column].where(part[column] > 0)))
            grouped = value.groupby(["seed", "step"])["log"].mean().map(np.exp)
        else:
            grouped = part.groupby(["seed", "step"])[column].mean()
        out[model] = grouped.rename(column).reset_index().assign(preset=preset)
    return out


def _shift(histograms: Mapping[str, Mapping[str, Any]], column: str):
    out = {}
    for model, per_seed in histograms.items():
        shift = seed_channel_shift(per_seed)
        out[model] = shift.groupby(["seed", "step"])[column].mean().reset_index()
    return out


def measure_frames(smoothness, ics, histograms, presets,
                   words: tuple[str, str] = (LOWER, HIGHER)) -> dict[str, dict[str, Any]]:
    """{measure name: {"long": model/seed/step/value(/grad_norm) frame, "kind", "words",
    "normalize", "label"}} for every compared measurement."""
    measures = {}
    ranges = {m: s.assign(loss_range=s["probe_loss_max"] - s["probe_loss_min"])
              for m, s in smoothness.items()}
    for preset in presets:
        pick = {m: s[s["preset"] == preset] for m, s in ranges.items()}
        for name, column, label in (
                ("loss_range", "loss_range", "loss range along the gradient"),
                ("grad_diff_max", "grad_diff_max", "gradient change along the gradient"),
                ("beta_smoothness", "beta_smoothness", "effective beta-smoothness")):
            measures[f"{preset}/{name}"] = {
                "long": _long(pick, column, ("grad_norm",)), "kind": "ratio",
                "words": words, "normalize": name != "beta_smoothness",
                "label": f"{label} ({preset} protocol)"}
        l2 = _with_grad_norm(_ics_layers(ics, preset, "ics_l2"), smoothness)
        measures[f"{preset}/ics_l2"] = {
            "long": _long(l2, "ics_l2", ("grad_norm",)), "kind": "ratio", "normalize": True,
            "words": words, "label": f"gradient ICS, L2 ({preset} protocol)"}
        measures[f"{preset}/ics_cosine"] = {
            "long": _long(_ics_layers(ics, preset, "ics_cosine"), "ics_cosine"),
            "kind": "difference", "normalize": False, "words": words,
            "label": f"gradient ICS, cosine ({preset} protocol)"}
    for column in ("delta_mu", "delta_var"):
        measures[f"activation/{column}"] = {
            "long": _long(_shift(histograms, column), column), "kind": "ratio",
            "normalize": False, "words": words,
            "label": f"activation shift |{column.replace('delta_', 'delta ')}|"}
    return measures


def compare_models(training, evals, smoothness, ics, histograms, init_distance,
                   num_classes: int | None = 10, smoothing_fraction: float = 0.05,
                   words: tuple[str, str] = (LOWER, HIGHER)) -> dict[str, Any]:
    """Every measurement compared across seeds (see :mod:`bnstudy.analysis.comparisons`).

    The ``candidate`` entry of each mapping is compared with the ``baseline`` entry; another
    pair of models (a variant against BN) goes in the same places, with its own ``words``."""
    curves = cmp.smoothed_losses(training, smoothing_fraction)
    # a network without classes (the DLN's regression) has no chance level to stall at
    classifies = bool(np.isfinite(evals[cmp.BASELINE]["test_accuracy"].to_numpy(float)).any())
    stalled = cmp.stalled_table(curves, num_classes if classifies else None)
    total = int(training[cmp.BASELINE]["step"].max()) + 1
    presets = list(dict.fromkeys(smoothness[cmp.BASELINE]["preset"]))
    summary: dict[str, Any] = {"measures": {}, "seeds": sorted(int(s) for s in
                                                              training[cmp.BASELINE]["seed"].unique()),
                               "task": "classification" if classifies else "regression"}
    for name, spec in measure_frames(smoothness, ics, histograms, presets, words).items():
        result = cmp.compare_measure(spec["long"], curves, stalled, total, kind=spec["kind"],
                                     words=spec["words"], normalize=spec["normalize"])
        summary["measures"][name] = {"label": spec["label"], **result}
    convs = {m: f[f["layer"].str.startswith("conv")] for m, f in init_distance.items()}
    kernels = "conv kernels"
    if all(frame.empty for frame in convs.values()):  # the DLN: every layer is a kernel
        convs, kernels = dict(init_distance), "kernels"
    summary["measures"]["init_distance"] = {
        "label": f"distance of the {kernels} from their initialization (final step)",
        **cmp.final_values(convs, "abs", words=words)}
    summary["measures"].update(geometry_measures(convs, kernels, words))
    if classifies:
        summary["measures"]["test_accuracy"] = {
            "label": "final test accuracy", **cmp.final_values(
                evals, "test_accuracy", kind="difference", words=words,
                aggregate=lambda v: float(v[0]))}
    else:
        summary["measures"]["test_loss"] = {
            "label": "final test loss", **cmp.final_values(
                evals, "test_loss", kind="ratio", words=words,
                aggregate=lambda v: float(v[0]))}
    summary["stalled"] = _stall_summary(curves, stalled, total) if classifies else {
        "total_steps": total, "plateau_exit_step": {}, "stalled_steps": {},
        "not_applicable": "a regression has no chance level to stall at"}
    return summary


GEOMETRY_MEASURES = {
    "init_distance_rel": ("rel", "relative distance ||W - W_0|| / ||W_0|| of the {kernels}"),
    "init_norm_growth": ("norm_growth", "growth of the norm ||W|| / ||W_0|| of the {kernels}"),
    "init_angle": ("angle", "angle between the {kernels} and their initialization"),
}
"""The forms of the distance from initialization besides ``init_distance`` (absolute): by
``||W - W_0||^2 = ||W||^2 + ||W_0||^2 - 2 ||W|| ||W_0|| cos(angle)``, the norm's growth and
the angle together make it up."""


def geometry_measures(kernels_by_model: Mapping[str, pd.DataFrame], kernels: str,
                      words: tuple[str, str]) -> dict[str, Any]:
    """The final relative distance, norm growth and angle (:data:`GEOMETRY_MEASURES`) of the
    kernels, each a paired comparison across seeds of the per-seed geometric mean over the
    layers; none for traces written before the geometry was recorded (no ``norm``)."""
    if not all("norm" in frame.columns for frame in kernels_by_model.values()):
        return {}
    grown = {m: with_norm_growth(f) for m, f in kernels_by_model.items()}
    return {name: {"label": f"{label.format(kernels=kernels)} (final step)",
                   **cmp.final_values(grown, column, words=words)}
            for name, (column, label) in GEOMETRY_MEASURES.items()}


def nothing_to_compare(excluded: Mapping[int, str], note: str | None) -> dict[str, Any]:
    """The summary of a study in which every seed diverged in at least one model."""
    return {"measures": {}, "seeds": [], "stalled": {}, "excluded_seeds": dict(excluded),
            "note": note, "nothing_to_compare": True}


def _stall_summary(curves, stalled: pd.DataFrame, total: int) -> dict[str, Any]:
    exits = {}
    for (model, seed), curve in curves.items():
        step = st.leaves_plateau_step(curve.index.to_numpy(), curve.to_numpy())
        exits.setdefault(model, {})[str(seed)] = None if step is None else float(step)
    return {"total_steps": total, "plateau_exit_step": exits,
            "stalled_steps": {str(seed): int(part["stalled"].sum())
                              for seed, part in stalled.groupby("seed")}}


CLAIMS = [
    # (key, claim, paper, blog, measure, what it is read in, what agreement means)
    ("ics", "Gradient ICS is not reduced by BN", "not reduced; may even increase",
     "inconclusive (L2); cosine worse with BN", "{preset}/ics_l2", "{preset} protocol", "not_lower"),
    ("landscape", "Smoother loss landscape with BN", "smoother", "smoother",
     "{preset}/loss_range", "{preset} protocol", "lower"),
    ("predictive", "More predictive gradients with BN", "more predictive", "more predictive",
     "{preset}/grad_diff_max", "{preset} protocol", "lower"),
    ("beta", "Smaller effective beta-smoothness with BN", "smaller", "smaller",
     "{preset}/beta_smoothness", "{preset} protocol", "lower"),
    ("shift", "Activation shift similar or larger with BN", "similar or larger",
     "smaller with BN (more stable)", "activation/delta_mu", "activation snapshots (no protocol)",
     "not_lower"),
    ("init", "BN weights end closer to their initialization", "closer (Lemma 4.5)",
     "closer in every conv layer", "init_distance", "final conv kernels (no protocol)", "lower"),
]

# The paper's claims on its second testbed, the deep linear network (Santurkar et al. 2018,
# Appendix A.1; Figs 3b, 9, 10, 11b), trained by full-batch gradient descent; the blog
# reproduces the VGG only. Read in the regression studies (summary["task"] == "regression").
NOT_IN_BLOG = "not studied (the blog reproduces the VGG only)"
DLN_CLAIMS = [
    ("ics", "Gradient ICS is not reduced by BN (DLN)", "not reduced (Fig 3b)", NOT_IN_BLOG,
     "{preset}/ics_l2", "{preset} protocol", "not_lower"),
    ("landscape", "Smoother loss landscape with BN (DLN)", "smoother (Fig 10)", NOT_IN_BLOG,
     "{preset}/loss_range", "{preset} protocol", "lower"),
    ("predictive", "More predictive gradients with BN (DLN)", "more predictive (Fig 10)",
     NOT_IN_BLOG, "{preset}/grad_diff_max", "{preset} protocol", "lower"),
    ("beta", "Smaller effective beta-smoothness with BN (DLN)", "smaller (Fig 10)", NOT_IN_BLOG,
     "{preset}/beta_smoothness", "{preset} protocol", "lower"),
]


def claims_of(summary: Mapping[str, Any]) -> list[tuple]:
    """The claims a comparison is read against: the VGG's (paper and blog) for a
    classification, the paper's DLN claims for the regression of the deep linear network."""
    return DLN_CLAIMS if summary.get("task") == "regression" else CLAIMS


# The optimizers of the two sources, (learning rate, momentum): Santurkar et al. (2018) trained
# with plain SGD at lr 0.1, the blog reproducing them with SGD, momentum 0.9, at lr 0.035. A
# protocol (docs/measurements.md) says how a quantity is measured, not how the models were
# trained: this study measures in either protocol whichever optimizer it is configured with.
PAPER_OPTIMIZER = (0.1, 0.0)
BLOG_OPTIMIZER = (0.035, 0.9)


PAPER_DLN_RATES = (1e-6, 1e-7)
"""The learning rates of the paper's full-batch gradient descent on the deep linear network."""


def optimizer_label(learning_rate: float, momentum: float, nesterov: bool = False, *,
                    full_batch: bool = False) -> str:
    """Whose optimizer a run trained with, in the Fidelity table's words.

    Returns:
        ``"paper optimizer (plain SGD, lr 0.1)"``, ``"blog optimizer (SGD m=0.9, lr 0.035)"``,
        for full batches without momentum ``"full-batch gradient descent, lr 1e-06"`` (with
        ``"the paper's DLN optimizer: "`` before it at the paper's DLN rates), or for any
        other settings ``"SGD, momentum 0.5, lr 0.05"`` (``Nesterov momentum`` when
        ``nesterov``; momentum 0 is plain SGD either way).
    """
    nesterov = nesterov and momentum > 0
    if full_batch and momentum == 0:
        paper = any(math.isclose(learning_rate, rate) for rate in PAPER_DLN_RATES)
        prefix = "the paper's DLN optimizer: " if paper else ""
        return f"{prefix}full-batch gradient descent, lr {learning_rate:g}"

    def matches(settings: tuple[float, float]) -> bool:
        return not nesterov and all(math.isclose(value, reference) for value, reference
                                    in zip((learning_rate, momentum), settings))

    if matches(PAPER_OPTIMIZER):
        return f"paper optimizer (plain SGD, lr {PAPER_OPTIMIZER[0]:g})"
    if matches(BLOG_OPTIMIZER):
        return f"blog optimizer (SGD m={BLOG_OPTIMIZER[1]:g}, lr {BLOG_OPTIMIZER[0]:g})"
    kind = "Nesterov momentum" if nesterov else "momentum"
    return f"SGD, {kind} {momentum:g}, lr {learning_rate:g}"


def measured_presets(summary: Mapping[str, Any]) -> list[str]:
    """The measurement protocols a comparison measured, in the run's order."""
    return [name.split("/")[0] for name in summary["measures"] if name.endswith("/ics_l2")]


def fidelity_table(summary: Mapping[str, Any], preset: str | None = None) -> list[dict[str, Any]]:
    """Rows: claim | paper | blog | protocol | this run (value, CI, significant?) | agrees?,
    with the raw p (``p_value``), Holm's adjusted p over the six claims (``p_holm``,
    ``significant_holm``) and the smallest effect the seeds could detect (``detectable``: a
    ratio above 1 or a difference, :func:`bnstudy.analysis.statistics.detectable_effect`;
    ``kind`` says which).

    The probe and ICS claims are read in ``preset``'s measurement protocol, by default the
    paper's when it was measured (else the first protocol); ``protocol`` names it (the report
    adds the optimizer from the run records, :func:`optimizer_label`). A claim is "untested"
    with one seed, never a bare yes or no."""
    if summary.get("nothing_to_compare"):  # named as the paper's protocol would read them
        return [{"key": key, "claim": claim, "paper": paper, "blog": blog,
                 "measure": template.format(preset=preset or "paper"),
                 "protocol": "not measured", "this_run": "not measured: " + summary["note"],
                 "significant": False, "n_seeds": 0, "agrees": "untested (every seed diverged)",
                 "p_value": math.nan, "p_holm": math.nan, "significant_holm": False,
                 "detectable": math.nan, "kind": None}
                for key, claim, paper, blog, template, _, _ in claims_of(summary)]
    rows = []
    presets = measured_presets(summary)
    if preset is None:
        preset = "paper" if "paper" in presets else presets[0]
    elif preset not in presets:
        raise ValueError(f"the comparison measured the protocols {presets}, not {preset!r}")
    for key, claim, paper, blog, template, read_in, expect in claims_of(summary):
        measure = template.format(preset=preset)
        view = summary["measures"][measure]["overall"]
        rows.append({"key": key, "claim": claim, "paper": paper, "blog": blog,
                     "measure": measure, "protocol": read_in.format(preset=preset),
                     "this_run": view["text"], "significant": view["significant"],
                     "n_seeds": view["n"], "agrees": _agrees(view, expect),
                     "p_value": view["p_value"], "kind": view["kind"],
                     "detectable": st.detectable_effect(view["per_seed"], kind=view["kind"])})
    return with_holm(rows)


CLAIMED_PAIR = ("none", "batch")
"""The normalizations (reference, treatment) the paper's and the blog's claims compare."""


def fidelity_readings(study_summary: Mapping[str, Any], normalization: Mapping[str, str]
                      ) -> list[dict[str, Any]]:
    """The claims read in every comparison of BN against no normalization (``normalization``:
    each model's, :data:`CLAIMED_PAIR`) at one learning rate (a sweep's per-rate comparisons
    are the sweep's question) and in every protocol it measured: :func:`fidelity_table`'s
    rows with ``comparison``, ``reference``, ``treatment`` and ``preset`` (None for a claim
    read without a protocol, which is then listed once per comparison).

    Holm's adjustment runs over every test of the table at once (its family: each claim in
    each comparison and protocol), so a row's ``p_holm`` is at least its headline table's."""
    rows, seen = [], set()
    for key, summary in study_summary["comparisons"].items():
        pair = (normalization.get(summary["reference"]), normalization.get(summary["treatment"]))
        if (pair != CLAIMED_PAIR or summary.get("learning_rate") is not None
                or summary.get("nothing_to_compare")):
            continue
        templates = {claim[0]: claim[4] for claim in claims_of(summary)}
        for preset in measured_presets(summary):
            for row in fidelity_table(summary, preset):
                protocol_free = "{preset}" not in templates[row["key"]]
                if (key, row["measure"]) not in seen:
                    seen.add((key, row["measure"]))
                    rows.append({**row, "comparison": key, "reference": summary["reference"],
                                 "treatment": summary["treatment"],
                                 "preset": None if protocol_free else preset})
    return with_holm(rows)


def with_holm(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row with ``p_holm``, its p adjusted over the table's family of claims
    (:func:`bnstudy.analysis.statistics.holm_adjusted`, claims without a test left out), and
    ``significant_holm``. The table tests six claims at once: with raw p < 0.05 each, some
    claim of six true nulls would pass in about a quarter of studies."""
    adjusted = st.holm_adjusted([row["p_value"] for row in rows])
    for row, p_holm in zip(rows, adjusted, strict=True):
        row["p_holm"] = float(p_holm)
        row["significant_holm"] = bool(row["n_seeds"] >= 2 and p_holm < 0.05)
    return rows


def _agrees(view: Mapping[str, Any], expect: str) -> str:
    if view["n"] < 2:
        return "untested (one seed)"
    if expect == "lower":
        return "yes" if view["direction"] == "lower" else (
            "no" if view["direction"] == "higher" else "not significant")
    return "no" if view["direction"] == "lower" else "yes"
