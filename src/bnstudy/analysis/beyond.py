"""Beyond the paper: noisy BatchNorm, the Lp normalizations and curvature against the
stability thresholds of SGD with momentum (numpy/pandas/scipy only).

* each variant is compared with no BN and with BN by the study's own analysis
  (:func:`bnstudy.analysis.study.compare_study`, the comparisons of the roster's beyond_study);
* :func:`noise_question` answers: does the noise raise the activation shift, and does BN's
  training advantage survive it?
* :func:`curvature_analysis` summarizes the top Hessian eigenvalue and the batch sharpness of
  every model against 2/eta, 2(1-beta)/eta and 2(1+beta)/eta, with intervals across seeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from bnstudy.analysis import statistics as st
from bnstudy.analysis.study import model_word
from bnstudy.analysis.tables import BASELINE, CANDIDATE, seed_channel_shift

VARIANTS = ("candidate_noisy", "candidate_l1", "candidate_l2", "candidate_linf")


def check_same_setup(records: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The models' names, once every run record shows the same data, network and training
    (all but the normalization and its noise settings) as the first one's.

    Raises:
        ValueError: naming the first model and setting that differ, and how to fix it.
    """
    def setup(record: Mapping[str, Any]) -> dict[str, Any]:
        network = {k: v for k, v in record["model_config"].items()
                   if k != "normalization" and not k.startswith("noise_")}
        return {"architecture": network, "training": record["train_config"],
                "measurements": record["measurement_configs"],
                "num_train": record.get("num_train"), "num_test": record.get("num_test")}

    names = list(records)
    reference = setup(records[names[0]])
    for name in names[1:]:
        theirs = setup(records[name])
        for part, value in reference.items():
            if theirs[part] != value:
                keys = ([k for k in value if theirs[part].get(k) != value[k]]
                        if isinstance(value, Mapping) else [])
                raise ValueError(
                    f"model '{name}' was trained with other {part} than '{names[0]}'"
                    + (f" ({', '.join(keys)} differ)" if keys else "")
                    + ": the beyond-the-paper comparisons need every model trained on the same "
                    "data with the same settings. Run the study and the variants in one "
                    "environment: `make beyond ENV=<env>` (or `kedro run --env <env> "
                    "--pipelines full_study,beyond_study`).")
    return names


def _overall(summary: Mapping[str, Any], measure: str) -> dict[str, Any] | None:
    found = summary.get("measures", {}).get(measure)
    return None if found is None else found["overall"]


def noise_question(bn_vs_none: Mapping[str, Any], noisy_vs_none: Mapping[str, Any],
                   noisy_vs_bn: Mapping[str, Any]) -> dict[str, Any]:
    """Does the noise raise the activation shift, and does BN's advantage survive it?

    Reads three comparisons (their ``overall`` views): the activation shift |delta mu| and
    |delta sigma^2| of noisy BN against BN (ratios), and the final test accuracy of BN and
    of noisy BN against no BN and of noisy BN against BN (differences).

    Returns:
        ``{"shift_raised": "yes" | "no" | "not significant" | "untested", "advantage":
        "intact" | "reduced" | "lost" | "not shown" | "untested", "statement": str, and the
        views used}``.
    """
    shift = _overall(noisy_vs_bn, "activation/delta_mu")
    shift_var = _overall(noisy_vs_bn, "activation/delta_var")
    bn_gain = _overall(bn_vs_none, "test_accuracy")
    noisy_gain = _overall(noisy_vs_none, "test_accuracy")
    noisy_vs_bn_acc = _overall(noisy_vs_bn, "test_accuracy")
    views = {"shift_delta_mu": shift, "shift_delta_var": shift_var, "bn_gain": bn_gain,
             "noisy_gain": noisy_gain, "noisy_vs_bn_accuracy": noisy_vs_bn_acc}
    if any(view is None or view["n"] < 2 for view in views.values()):
        return {**views, "shift_raised": "untested", "advantage": "untested",
                "statement": "Not testable: fewer than two seeds were measured healthy in "
                             "all three models."}
    shift_raised = {"higher": "yes", "lower": "no"}.get(shift["direction"], "not significant")
    if noisy_gain["direction"] == "higher":
        advantage = "reduced" if noisy_vs_bn_acc["direction"] == "lower" else "intact"
    elif bn_gain["direction"] == "higher":
        advantage = "lost"
    else:
        advantage = "not shown"
    verb = {"yes": "raises", "no": "lowers"}.get(shift_raised, "does not significantly raise")
    statement = (
        f"Noise {verb} the activation shift |delta mu| against BN ({shift['text']}; |delta sigma^2|: "
        f"{shift_var['text']}). Final test accuracy, noisy BN minus no BN: {noisy_gain['text']}; "
        f"BN minus no BN: {bn_gain['text']}; noisy BN minus BN: {noisy_vs_bn_acc['text']}. "
        + {"intact": "BN's advantage over no BN survives the noise.",
           "reduced": "BN's advantage over no BN survives the noise, but noisy BN ends below BN.",
           "lost": "BN's advantage over no BN does not survive the noise.",
           "not shown": "This run shows no significant advantage of BN over no BN to test "
                        "against the noise."}[advantage])
    return {**views, "shift_raised": shift_raised, "advantage": advantage,
            "statement": statement}


def shift_table(histograms: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The paper's activation-shift data for several models: ``model, seed, step, layer,
    delta_mu, delta_var`` (between consecutive activation snapshots)."""
    frames = [seed_channel_shift(per_seed).assign(model=model)
              for model, per_seed in histograms.items()]
    table = pd.concat(frames, ignore_index=True)
    return table[["model", "seed", "step", "layer", "delta_mu", "delta_var"]]


# ----------------------------------------------------------------------------- curvature

CURVATURE_METRICS = ("lambda_max", "batch_sharpness", "hessian_trace")
THRESHOLD_METRICS = ("lambda_max", "batch_sharpness")
"""The quantities set against the stability thresholds (the trace sums every eigenvalue:
it has none)."""
CURVATURE_NAMES = {"lambda_max": "top Hessian eigenvalue", "batch_sharpness": "batch sharpness",
                   "hessian_trace": "Hessian trace (Hutchinson)"}


def thresholds(learning_rate: float, momentum: float) -> dict[str, float]:
    """2/eta, 2(1-beta)/eta and 2(1+beta)/eta (57.1, 5.7 and 108.6 at 0.035, 0.9)."""
    return {"2/eta": 2.0 / learning_rate,
            "2(1-beta)/eta": 2.0 * (1.0 - momentum) / learning_rate,
            "2(1+beta)/eta": 2.0 * (1.0 + momentum) / learning_rate}


def near_threshold(steps: np.ndarray, values: np.ndarray, threshold: float,
                   near: float) -> dict[str, Any]:
    """When a curve first comes within ``near`` (a fraction) of ``threshold``, and whether
    it stays there.

    Returns:
        ``first_step``: the first step with ``|value / threshold - 1| <= near`` (None if
        never); ``stays``: every later finite value is within too; ``fraction_after``: the
        fraction of the values from ``first_step`` on that are within.
    """
    finite = np.isfinite(values)
    steps, values = np.asarray(steps)[finite], np.asarray(values)[finite]
    within = np.abs(values / threshold - 1.0) <= near
    if not within.any():
        return {"first_step": None, "stays": False, "fraction_after": 0.0}
    first = int(np.argmax(within))
    after = within[first:]
    return {"first_step": int(steps[first]), "stays": bool(after.all()),
            "fraction_after": float(after.mean())}


def curvature_table(curvature: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """``model, seed, step, metric, value`` for lambda_max, batch_sharpness and, where it
    was estimated (any finite value), hessian_trace (healthy rows)."""
    frames = []
    for model, frame in curvature.items():
        rows = frame[~frame["diverged"]] if "diverged" in frame else frame
        for metric in CURVATURE_METRICS:
            if metric not in rows or not np.isfinite(rows[metric].to_numpy(dtype=float)).any():
                continue
            frames.append(pd.DataFrame({"model": model, "seed": rows["seed"].to_numpy(),
                                        "step": rows["step"].to_numpy(), "metric": metric,
                                        "value": rows[metric].to_numpy(dtype=float)}))
    if not frames:
        return pd.DataFrame(columns=["model", "seed", "step", "metric", "value"])
    return pd.concat(frames, ignore_index=True)


def _late_means(rows: pd.DataFrame) -> pd.Series:
    """Each seed's mean over the last third of its measured steps."""
    cut = rows["step"].quantile(2.0 / 3.0)
    return rows[rows["step"] >= cut].groupby("seed")["value"].mean()


def curvature_analysis(curvature: Mapping[str, pd.DataFrame], learning_rate: float,
                       momentum: float, near: float) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every model's curvature measures; the top eigenvalue and the batch sharpness against
    the three thresholds.

    Per model and metric (the Hessian trace too, where it was estimated): the mean across
    seeds (95% t interval) of each seed's mean over the last third of the measurements; for
    :data:`THRESHOLD_METRICS`, per threshold, when the seed-mean curve first comes within
    ``near`` of it and whether it stays (:func:`near_threshold`); and, for every model but
    the baseline, the paired ratio of its late mean to the baseline's.
    """
    table = curvature_table(curvature)
    limits = thresholds(learning_rate, momentum)
    summary: dict[str, Any] = {"thresholds": limits, "near": near, "models": {},
                               "measured": not table.empty,
                               "trace_measured": bool((table["metric"] == "hessian_trace").any())}
    if table.empty:
        summary["statement"] = ("Curvature was not measured (training.curvature_every is "
                                "null in this environment).")
        return table, summary
    for (model, metric), rows in table.groupby(["model", "metric"], sort=False):
        mean_curve = rows.groupby("step")["value"].mean()
        late = _late_means(rows)
        interval = st.seed_interval(late.to_numpy())
        entry = {"late_mean": interval.mean, "late_low": interval.low,
                 "late_high": interval.high, "n": interval.n, "per_seed": late.to_dict(),
                 "thresholds": {name: near_threshold(mean_curve.index.to_numpy(),
                                                     mean_curve.to_numpy(), value, near)
                                for name, value in limits.items()}
                 if metric in THRESHOLD_METRICS else {}}
        if model != BASELINE and BASELINE in curvature:
            base = _late_means(table[(table["model"] == BASELINE) & (table["metric"] == metric)])
            seeds = sorted(set(late.index) & set(base.index))
            if seeds:
                # a ratio where both are positive (eigenvalues usually are), else a difference
                positive = (late[seeds] > 0).all() and (base[seeds] > 0).all()
                comparison = st.paired_comparison(late[seeds].to_numpy(), base[seeds].to_numpy(),
                                                  kind="ratio" if positive else "difference")
                entry["vs_baseline"] = comparison.describe(
                    lower_is=f"lower for {model_word(model)}",
                    higher_is=f"higher for {model_word(model)}")
        summary["models"].setdefault(model, {})[metric] = entry
    summary["statements"] = threshold_statements(summary)
    return table, summary


def late_level(entry: Mapping[str, Any]) -> str:
    """``mean [low, high]`` of a late curvature across seeds, or what is missing."""
    if not entry["n"]:
        return "not measured (no healthy seed)"
    if entry["n"] < 2:
        return f"{entry['late_mean']:.3g} (one seed: no interval)"
    return f"{entry['late_mean']:.3g} [{entry['late_low']:.3g}, {entry['late_high']:.3g}]"


def threshold_statements(summary: Mapping[str, Any]) -> list[str]:
    """One sentence per model and metric: its late level with its interval, and when it came
    within ``near`` of each threshold and whether it stayed."""
    near = summary["near"]
    sentences = []
    for model, metrics in summary["models"].items():
        for metric, entry in metrics.items():
            name, level = CURVATURE_NAMES[metric], late_level(entry)
            parts = []
            for threshold, reached in entry["thresholds"].items():
                if reached["first_step"] is None:
                    parts.append(f"never within {near:.0%} of {threshold}")
                else:
                    parts.append(f"within {near:.0%} of {threshold} from step "
                                 f"{reached['first_step']}, "
                                 + ("and stays there" if reached["stays"] else
                                    f"but stays for only {reached['fraction_after']:.0%} of "
                                    "the later measurements"))
            sentence = (f"{model_word(model)}: {name} {level} over the last third "
                        f"of training across {entry['n']} seeds"
                        + ("; " + "; ".join(parts) if parts else "") + ".")
            if "vs_baseline" in entry:
                sentence += f" Against no BN: {entry['vs_baseline']}."
            sentences.append(sentence)
    return sentences


def lp_rows(comparisons: Mapping[str, Mapping[str, Any]], bn_vs_none: Mapping[str, Any],
            preset: str) -> list[dict[str, Any]]:
    """The Lp table: per normalization (BN and each variant), each measure against no BN.

    ``comparisons``: ``{variant: summary of variant vs no BN}``; ``bn_vs_none``: the study's
    own BN-vs-no-BN summary. Measures: final test accuracy (difference), loss range,
    gradient change and effective beta-smoothness in the ``preset`` protocol (ratios).
    """
    measures = ("test_accuracy", f"{preset}/loss_range", f"{preset}/grad_diff_max",
                f"{preset}/beta_smoothness")
    rows = []
    for model, summary in {CANDIDATE: bn_vs_none, **comparisons}.items():
        row = {"model": model, "name": model_word(model)}
        for measure in measures:
            view = _overall(summary, measure)
            row[measure] = "not measured" if view is None else view["text"]
        rows.append(row)
    return rows
