"""The questions only ``beyond_study`` asks (numpy/pandas/scipy only): does Santurkar et al.'s
noise raise the activation shift while BN's advantage survives, and where does every model's
curvature sit against the stability thresholds of SGD with momentum.

Every comparison of the study (each variant against no BN and against BN) is made by the
general analysis (:func:`bnstudy.analysis.study.compare_study`, the roster's
``studies.beyond_study.comparisons``); the questions read those summaries and find the pairs
they ask about by the models' normalization kinds (``none``, ``batch``, ``batch_noisy``,
``noisy``), not by name:

* :func:`noise_question` answers the noise question (and, with a ``noisy`` model, whether the
  noise lets the network without BN train at all);
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
from bnstudy.analysis.tables import BASELINE, CANDIDATE

NOISE_PAIRS = {"bn_vs_none": ("none", "batch"), "noisy_vs_none": ("none", "batch_noisy"),
               "noisy_vs_bn": ("batch", "batch_noisy")}
"""The comparisons the noise question reads, as (reference, treatment) normalization kinds."""
WITHOUT_BN = ("none", "noisy")
"""The comparison that says whether the noise lets the network without BN train."""


def check_same_setup(records: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """``{model: normalization}`` of every model (in order), once every run record shows the
    same data, network and training (all but the normalization and its noise settings) as
    the first one's.

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
    return {name: records[name]["model_config"]["normalization"] for name in names}


def comparisons_of(study_summary: Mapping[str, Any], normalizations: Mapping[str, str],
                   reference_kind: str, treatment_kind: str) -> list[dict[str, Any]]:
    """The study's comparisons (:func:`bnstudy.analysis.study.compare_study`'s summary) of a
    ``treatment_kind`` model against a ``reference_kind`` one, in the declared order, each
    with its ``key``."""
    return [{**summary, "key": key} for key, summary in study_summary["comparisons"].items()
            if normalizations.get(summary["reference"]) == reference_kind
            and normalizations.get(summary["treatment"]) == treatment_kind]


def find_comparison(study_summary: Mapping[str, Any], normalizations: Mapping[str, str],
                    reference_kind: str, treatment_kind: str) -> dict[str, Any] | None:
    """The first of :func:`comparisons_of` (in a sweep, its first rate); None when the study
    declares none."""
    return next(iter(comparisons_of(study_summary, normalizations, reference_kind, treatment_kind)), None)


def _overall(summary: Mapping[str, Any], measure: str) -> dict[str, Any] | None:
    found = summary.get("measures", {}).get(measure)
    return None if found is None else found["overall"]


def noise_question(study_summary: Mapping[str, Any],
                   normalizations: Mapping[str, str]) -> dict[str, Any]:
    """The noise question on the study's comparisons (:data:`NOISE_PAIRS`, found by kind):
    :func:`noise_answer`, the keys of the comparisons it read (``comparisons``), and
    ``without_bn`` (:func:`noise_without_bn`, None without a ``noisy`` model's comparison).
    When a comparison it needs is not declared, ``asked`` is False and the statement says
    which to add."""
    found = {name: find_comparison(study_summary, normalizations, *kinds)
             for name, kinds in NOISE_PAIRS.items()}
    without = find_comparison(study_summary, normalizations, *WITHOUT_BN)
    extra = {"comparisons": {name: None if summary is None else summary["key"]
                             for name, summary in found.items()},
             "without_bn": None if without is None else noise_without_bn(without)}
    missing = [f"{treatment} against {reference}" for name, (reference, treatment)
               in NOISE_PAIRS.items() if found[name] is None]
    if missing:
        return {**extra, "asked": False, "shift_raised": "untested", "advantage": "untested",
                "statement": "Not asked: the study compares no " + " and no ".join(missing)
                             + " (normalization kinds; add such a pair to the study's "
                             "comparisons in the roster)."}
    return {**extra, "asked": True, **noise_answer(found["bn_vs_none"], found["noisy_vs_none"],
                                                   found["noisy_vs_bn"])}


def noise_answer(bn_vs_none: Mapping[str, Any], noisy_vs_none: Mapping[str, Any],
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


def noise_without_bn(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Whether the network without BN trains under the noise (the paper: the noise "prevents
    it from training entirely"): in how many of the compared seeds the ``noisy`` model (the
    comparison's treatment) left the chance-level plateau, against how many its reference
    did (none: the run is too short to tell, ``untested``), and its final test accuracy
    against no BN.

    Returns:
        ``{"model", "trains": "yes" | "no" | "in some seeds" | "untested", "statement"}``.
    """
    treatment, reference = summary["treatment"], summary["reference"]
    who = f"Noise without BN ({treatment} against {reference})"
    if summary.get("nothing_to_compare"):
        return {"model": treatment, "trains": "untested",
                "statement": f"{who}: nothing to compare. {summary.get('note') or ''}".strip()}
    exits = summary["stalled"]["plateau_exit_step"]  # by role: the treatment is the candidate
    left, reference_left = (sum(step is not None for step in exits[role].values())
                            for role in (CANDIDATE, BASELINE))
    seeds = len(exits[CANDIDATE])
    trains = ("untested" if reference_left == 0 else "yes" if left == seeds
              else "no" if left == 0 else "in some seeds")
    accuracy = _overall(summary, "test_accuracy")
    statement = (f"{who}: it left the chance-level plateau in {left} of {seeds} seeds, "
                 f"{model_word(reference)} in {reference_left}"
                 + (" (too short a run to tell)" if trains == "untested" else "")
                 + f"; final test accuracy, {model_word(treatment)} minus {model_word(reference)}: "
                 f"{'not computed' if accuracy is None else accuracy['text']}.")
    if summary.get("note"):
        statement += f" {summary['note']}"
    return {"model": treatment, "trains": trains, "statement": statement}


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
                       momentum: float, near: float, reference: str | None = None
                       ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every model's curvature measures; the top eigenvalue and the batch sharpness against
    the three thresholds.

    Per model and metric (the Hessian trace too, where it was estimated): the mean across
    seeds (95% t interval) of each seed's mean over the last third of the measurements; for
    :data:`THRESHOLD_METRICS`, per threshold, when the seed-mean curve first comes within
    ``near`` of it and whether it stays (:func:`near_threshold`); and, for every model but
    ``reference`` (a model of ``curvature``, the study's model without normalization), the
    paired ratio of its late mean to the reference's (``vs_reference``).
    """
    table = curvature_table(curvature)
    limits = thresholds(learning_rate, momentum)
    summary: dict[str, Any] = {"thresholds": limits, "near": near, "models": {},
                               "reference": reference, "measured": not table.empty,
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
        if reference is not None and model != reference:
            base = _late_means(table[(table["model"] == reference) & (table["metric"] == metric)])
            against = _late_against(model, late, base)
            if against is not None:
                entry["vs_reference"] = against
        summary["models"].setdefault(model, {})[metric] = entry
    summary["statements"] = threshold_statements(summary)
    return table, summary


def _late_against(model: str, late: pd.Series, reference: pd.Series) -> str | None:
    """The paired comparison of a model's late means with the reference's, over the seeds
    both have (None when they share none): a ratio where both are positive (eigenvalues
    usually are), else a difference."""
    seeds = sorted(set(late.index) & set(reference.index))
    if not seeds:
        return None
    positive = (late[seeds] > 0).all() and (reference[seeds] > 0).all()
    comparison = st.paired_comparison(late[seeds].to_numpy(), reference[seeds].to_numpy(),
                                      kind="ratio" if positive else "difference")
    return comparison.describe(lower_is=f"lower for {model_word(model)}",
                               higher_is=f"higher for {model_word(model)}")


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
            if "vs_reference" in entry:
                sentence += f" Against {model_word(summary['reference'])}: {entry['vs_reference']}."
            sentences.append(sentence)
    return sentences
