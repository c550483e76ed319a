"""Analysis of the two models' traces: tidy tables and the comparisons the study is about.

Pure pandas/NumPy (no Kedro): every function takes the per-model traces as persisted by the
training pipeline, keyed by model name (``{"baseline": frame, "candidate": frame}``), and
returns

* a **tidy table** in long format, columns ``model, step, layer, preset, metric, value``
  (``layer`` / ``preset`` are ``""`` where they don't apply), ready for seaborn facets; and
* a **summary**: plain nested dicts of Python numbers, the comparison candidate vs baseline.

Comparisons of per-step series use the steps both models measured (they follow the same
schedule). Training is split into ``num_phases`` equal phases by step (early / middle /
late for 3), and for each phase the summary gives each model's median, the ratio
candidate / baseline of the medians, and the fraction of steps at which the candidate's
value is the lower one. "Lower" is "better" for every per-step measurement here except
the ICS cosine, where higher (closer to 1) is better.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

BASELINE, CANDIDATE = "baseline", "candidate"
TIDY_COLUMNS = ["model", "seed", "step", "layer", "preset", "metric", "value"]
PHASE_NAMES = {1: ("all",), 2: ("first_half", "second_half"), 3: ("early", "middle", "late")}


# ----------------------------------------------------------------------------- helpers


def tidy(frame: pd.DataFrame, model: str, metrics: Sequence[str], layer: str | None = None,
         preset: str | None = None) -> pd.DataFrame:
    """Long format of ``frame``'s ``metrics`` columns, with ``model`` and optional ids.

    ``layer`` / ``preset`` name columns of ``frame`` to carry over; where ``None`` the
    tidy column is filled with ``""``.
    """
    if "seed" not in frame.columns:  # a single run without a seed column: seed 0
        frame = frame.assign(seed=0)
    ids = ["seed", "step"] + [c for c in (layer, preset) if c is not None]
    long = frame.melt(id_vars=ids, value_vars=list(metrics), var_name="metric", value_name="value")
    long.insert(0, "model", model)
    long["layer"] = long[layer] if layer is not None else ""
    long["preset"] = long[preset] if preset is not None else ""
    return long[TIDY_COLUMNS].reset_index(drop=True)


def concat_tidy(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("model", "layer", "preset", "metric") else float)
                             for c in TIDY_COLUMNS})
    out = pd.concat(frames, ignore_index=True)
    out["step"] = out["step"].astype("int64")
    out["seed"] = out["seed"].astype("int64")
    out["value"] = out["value"].astype("float64")
    return out


def phase_labels(steps: np.ndarray, num_phases: int) -> np.ndarray:
    """Name of the training phase of each step: equal thirds (halves, ...) of the steps."""
    if num_phases not in PHASE_NAMES:
        raise ValueError(f"num_phases must be one of {sorted(PHASE_NAMES)}, got {num_phases}")
    steps = np.asarray(steps)
    if steps.size == 0:
        return np.array([], dtype=object)
    first, last = steps.min(), steps.max()
    position = (steps - first) / max(last - first + 1, 1)
    index = np.minimum((position * num_phases).astype(int), num_phases - 1)
    return np.asarray(PHASE_NAMES[num_phases], dtype=object)[index]


def compare_series(baseline: pd.Series, candidate: pd.Series, num_phases: int,
                   lower_is_better: bool = True) -> dict[str, Any]:
    """Compare two per-step series (indexed by step) on the steps they share.

    Returns ``{"steps": n, "phases": {phase: {"baseline_median", "candidate_median",
    "ratio", "candidate_better_fraction", "steps"}}, "overall": {...same...}}`` where
    ``ratio`` = candidate median / baseline median (NaN when the baseline median is 0) and
    ``candidate_better_fraction`` = fraction of shared steps with candidate < baseline
    (``>`` when ``lower_is_better`` is False). Non-finite values are dropped pairwise.
    """
    joined = pd.concat({BASELINE: baseline, CANDIDATE: candidate}, axis=1, join="inner")
    joined = joined[np.isfinite(joined[BASELINE]) & np.isfinite(joined[CANDIDATE])]
    labels = phase_labels(joined.index.to_numpy(), num_phases)

    def block(part: pd.DataFrame) -> dict[str, float]:
        if part.empty:
            return {"baseline_median": float("nan"), "candidate_median": float("nan"),
                    "ratio": float("nan"), "candidate_better_fraction": float("nan"), "steps": 0}
        base_median = float(part[BASELINE].median())
        cand_median = float(part[CANDIDATE].median())
        better = part[CANDIDATE] < part[BASELINE] if lower_is_better else part[CANDIDATE] > part[BASELINE]
        return {
            "baseline_median": base_median,
            "candidate_median": cand_median,
            "ratio": cand_median / base_median if base_median != 0 else float("nan"),
            "candidate_better_fraction": float(better.mean()),
            "steps": int(len(part)),
        }

    phases = {name: block(joined[labels == name]) for name in PHASE_NAMES[num_phases]}
    return {"steps": int(len(joined)), "phases": phases, "overall": block(joined)}


def _series(frame: pd.DataFrame, column: str) -> pd.Series:
    """The per-step series of ``column``, averaged over seeds when there are several (the
    descriptive seed-mean curve; the statistics across seeds are in
    :mod:`bnstudy.analysis.comparisons`)."""
    return frame.groupby("step")[column].mean().sort_index()


def _presets(traces: Mapping[str, pd.DataFrame]) -> list[str]:
    return list(dict.fromkeys(traces[BASELINE]["preset"]).keys())


def _check_models(traces: Mapping[str, Any], what: str) -> None:
    missing = {BASELINE, CANDIDATE} - set(traces)
    if missing:
        raise ValueError(f"{what}: need traces of both models, missing {sorted(missing)}")


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average with a window that grows at the start (no padding)."""
    values = np.asarray(values, dtype=float)
    window = max(1, int(window))
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, values.size + 1), window)
    return (cumulative[1:] - cumulative[np.arange(1, values.size + 1) - counts]) / counts


# ----------------------------------------------------------------------------- analyses


def analyze_training_curves(training_traces: Mapping[str, pd.DataFrame],
                            eval_traces: Mapping[str, pd.DataFrame], num_phases: int,
                            smoothing_fraction: float) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Loss / accuracy curves and how fast each model trains.

    Summary: each model's final and best test accuracy, final test loss, mean training loss
    over the last ``smoothing_fraction`` of steps, and the comparison of the
    moving-average training loss (window ``smoothing_fraction`` of the steps) per phase:
    ``candidate_better_fraction`` is the fraction of steps at which the candidate's smoothed
    training loss is the lower one.
    """
    _check_models(training_traces, "training curves")
    tables, models = [], {}
    smoothed = {}
    for model in (BASELINE, CANDIDATE):
        train, test = training_traces[model], eval_traces[model]
        tables.append(tidy(train, model, ["train_loss", "train_accuracy"]))
        tables.append(tidy(test, model, ["test_loss", "test_accuracy"]))
        mean_train = train.groupby("step")[["train_loss", "train_accuracy"]].mean()
        mean_test = test.groupby("step")[["test_loss", "test_accuracy"]].mean()
        window = max(1, int(round(smoothing_fraction * len(mean_train))))
        smoothed[model] = pd.Series(moving_average(mean_train["train_loss"].to_numpy(), window),
                                    index=mean_train.index.to_numpy())
        models[model] = {
            "final_test_accuracy": float(mean_test["test_accuracy"].iloc[-1]),
            "best_test_accuracy": float(mean_test["test_accuracy"].max()),
            "final_test_loss": float(mean_test["test_loss"].iloc[-1]),
            "final_train_loss": float(mean_train["train_loss"].to_numpy()[-window:].mean()),
            "final_train_accuracy": float(mean_train["train_accuracy"].to_numpy()[-window:].mean()),
            "num_steps": int(len(mean_train)),
            "num_seeds": int(train["seed"].nunique()) if "seed" in train else 1,
        }
    summary = {
        "models": models,
        "test_accuracy_gain": models[CANDIDATE]["final_test_accuracy"] - models[BASELINE]["final_test_accuracy"],
        "smoothed_train_loss": compare_series(smoothed[BASELINE], smoothed[CANDIDATE], num_phases),
        "smoothing_window": max(1, int(round(smoothing_fraction * models[BASELINE]["num_steps"]))),
    }
    return concat_tidy(tables), summary


def analyze_gradient_ics(ics_traces: Mapping[str, pd.DataFrame],
                         num_phases: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Santurkar's gradient ICS per layer: L2 distance (lower is better) and cosine (higher).

    The table holds the whole-layer values (``param == "all"``); the per-leaf values stay
    in the traces. Summary per preset and layer: ``compare_series`` of ``ics_l2`` and
    ``ics_cosine``; per preset, the fraction of layers where the candidate's median L2 is
    lower and where its median cosine is higher.
    """
    _check_models(ics_traces, "gradient ICS")
    tables = []
    for model in (BASELINE, CANDIDATE):
        layers = ics_traces[model][ics_traces[model]["param"] == "all"]
        tables.append(tidy(layers, model, ["ics_l2", "ics_cosine"], layer="layer", preset="preset"))
    summary: dict[str, Any] = {}
    whole = {m: t[t["param"] == "all"] for m, t in ics_traces.items()}
    for preset in _presets(ics_traces):
        per_layer = {}
        for layer in dict.fromkeys(whole[BASELINE]["layer"]):
            pick = {m: whole[m][(whole[m]["preset"] == preset) & (whole[m]["layer"] == layer)]
                    for m in (BASELINE, CANDIDATE)}
            per_layer[layer] = {
                "ics_l2": compare_series(_series(pick[BASELINE], "ics_l2"),
                                         _series(pick[CANDIDATE], "ics_l2"), num_phases),
                "ics_cosine": compare_series(_series(pick[BASELINE], "ics_cosine"),
                                             _series(pick[CANDIDATE], "ics_cosine"), num_phases,
                                             lower_is_better=False),
            }
        l2_better = [v["ics_l2"]["overall"]["candidate_median"] < v["ics_l2"]["overall"]["baseline_median"]
                     for v in per_layer.values()]
        cos_better = [v["ics_cosine"]["overall"]["candidate_median"] > v["ics_cosine"]["overall"]["baseline_median"]
                      for v in per_layer.values()]
        summary[preset] = {
            "layers": per_layer,
            "fraction_layers_candidate_lower_l2": float(np.mean(l2_better)) if l2_better else float("nan"),
            "fraction_layers_candidate_higher_cosine": float(np.mean(cos_better)) if cos_better else float("nan"),
        }
    return concat_tidy(tables), summary


def _analyze_smoothness(smoothness_traces: Mapping[str, pd.DataFrame], num_phases: int,
                        metrics: Sequence[str], compared: str, derived: Mapping[str, tuple[str, str]] = {}
                        ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Shared body of the three probe analyses: tidy ``metrics`` and compare ``compared``."""
    _check_models(smoothness_traces, "smoothness")
    frames = {}
    for model, trace in smoothness_traces.items():
        extra = {name: trace[high] - trace[low] for name, (low, high) in derived.items()}
        frames[model] = trace.assign(**extra)
    tables = [tidy(frames[m], m, metrics, preset="preset") for m in (BASELINE, CANDIDATE)]
    summary = {}
    for preset in _presets(smoothness_traces):
        pick = {m: frames[m][frames[m]["preset"] == preset] for m in (BASELINE, CANDIDATE)}
        summary[preset] = compare_series(_series(pick[BASELINE], compared),
                                         _series(pick[CANDIDATE], compared), num_phases)
    return concat_tidy(tables), {"compared": compared, "presets": summary}


def analyze_loss_landscape(smoothness_traces: Mapping[str, pd.DataFrame],
                           num_phases: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Loss along the gradient direction: its min, max and range (max - min) over s per step.

    Summary: ``compare_series`` of the loss range per preset (lower = smoother).
    """
    return _analyze_smoothness(smoothness_traces, num_phases,
                               ["probe_loss_min", "probe_loss_max", "loss_range"], "loss_range",
                               derived={"loss_range": ("probe_loss_min", "probe_loss_max")})


def analyze_gradient_predictiveness(smoothness_traces: Mapping[str, pd.DataFrame],
                                    num_phases: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``||grad L(W(s)) - g_t||`` over s per step: its min and max.

    Summary: ``compare_series`` of the max per preset (lower = more predictive gradient).
    """
    return _analyze_smoothness(smoothness_traces, num_phases,
                               ["grad_diff_min", "grad_diff_max"], "grad_diff_max")


def analyze_beta_smoothness(smoothness_traces: Mapping[str, pd.DataFrame],
                            num_phases: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Effective beta-smoothness per step. Summary: ``compare_series`` per preset (lower = smoother)."""
    return _analyze_smoothness(smoothness_traces, num_phases, ["beta_smoothness"], "beta_smoothness")


def channel_shift(histograms: Mapping[str, Any]) -> pd.DataFrame:
    """The paper's |delta mu| and |delta sigma^2| between consecutive activation snapshots.

    For each layer and snapshot k >= 1: ``delta_mu`` = mean over channels of
    ``|mu_k - mu_{k-1}|`` and ``delta_var`` = mean over channels of
    ``|sigma^2_k - sigma^2_{k-1}|``, where mu, sigma^2 are the per-channel mean and variance
    of the layer's pre-activation on the snapshot's batch. Rows at ``step`` = snapshot k.
    """
    steps = np.asarray(histograms["steps"])
    rows = []
    for layer, values in histograms["layers"].items():
        mean, var = np.asarray(values["channel_mean"]), np.asarray(values["channel_var"])
        delta_mu = np.abs(np.diff(mean, axis=0)).mean(axis=1)
        delta_var = np.abs(np.diff(var, axis=0)).mean(axis=1)
        rows.append(pd.DataFrame({"step": steps[1:], "layer": layer, "delta_mu": delta_mu, "delta_var": delta_var}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["step", "layer", "delta_mu", "delta_var"])


def seed_channel_shift(histograms: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`channel_shift` of every seed (``{"seed_<k>": histograms}``), with a ``seed``
    column; a single run's histograms (no seed keys) count as seed 0."""
    if "steps" in histograms:
        return channel_shift(histograms).assign(seed=0)
    return pd.concat([channel_shift(h).assign(seed=int(key.removeprefix("seed_")))
                      for key, h in histograms.items()], ignore_index=True)


def analyze_activation_shift(activation_stats: Mapping[str, pd.DataFrame],
                             activation_histograms: Mapping[str, Mapping[str, Any]],
                             num_phases: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The Ioffe-Szegedy notion of shift: how each layer's activation distribution moves.

    Table metrics: each snapshot's ``mean``, ``std``, ``frac_positive`` and the
    between-snapshot ``delta_mu`` / ``delta_var`` (:func:`channel_shift`). Summary per
    layer: ``compare_series`` of ``delta_mu`` and ``delta_var`` (lower = more stable), and
    the fraction of layers where the candidate's median shift is the lower.
    """
    _check_models(activation_stats, "activation shift")
    tables, shifts = [], {}
    for model in (BASELINE, CANDIDATE):
        tables.append(tidy(activation_stats[model], model, ["mean", "std", "frac_positive"], layer="layer"))
        shifts[model] = seed_channel_shift(activation_histograms[model])
        tables.append(tidy(shifts[model], model, ["delta_mu", "delta_var"], layer="layer"))
    per_layer = {}
    for layer in dict.fromkeys(shifts[BASELINE]["layer"]):
        pick = {m: shifts[m][shifts[m]["layer"] == layer] for m in (BASELINE, CANDIDATE)}
        per_layer[layer] = {
            metric: compare_series(_series(pick[BASELINE], metric), _series(pick[CANDIDATE], metric), num_phases)
            for metric in ("delta_mu", "delta_var")
        }

    def fraction(metric: str) -> float:
        better = [v[metric]["overall"]["candidate_median"] < v[metric]["overall"]["baseline_median"]
                  for v in per_layer.values()]
        return float(np.mean(better)) if better else float("nan")

    summary = {
        "layers": per_layer,
        "fraction_layers_candidate_lower_delta_mu": fraction("delta_mu"),
        "fraction_layers_candidate_lower_delta_var": fraction("delta_var"),
    }
    return concat_tidy(tables), summary


GEOMETRY_METRICS = ("abs", "rel", "norm", "norm_growth", "angle", "effective_lr", "gamma",
                    "sigma", "gamma_over_sigma")
"""The columns of an init-distance trace :func:`analyze_init_distance` reads, with
``norm_growth`` = ||W_t|| / ||W_0|| (:func:`with_norm_growth`)."""


def with_norm_growth(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``norm_growth`` = ``norm`` over the run's ``norm`` at step 0, per
    seed (and learning rate) and layer; unchanged without a ``norm`` column (a trace written
    before the geometry was recorded has only ``abs`` and ``rel``)."""
    if "norm" not in frame.columns:
        return frame
    keys = [c for c in ("seed", "learning_rate", "layer") if c in frame.columns]
    first = frame.sort_values("step").groupby(keys, sort=False)["norm"].transform("first")
    return frame.assign(norm_growth=frame["norm"] / first)


def analyze_init_distance(init_distances: Mapping[str, pd.DataFrame]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The geometry of each layer's kernel against its initialization, over training and at
    the end.

    Summary per layer at the final step: each model's ``abs`` (``||W - W_0||_F``), ``rel``
    (``/ ||W_0||_F``), ``norm_growth`` (``||W|| / ||W_0||``) and ``angle`` (radians), means
    over the seeds, the ratio candidate / baseline of ``abs``, and the fraction of layers
    whose candidate kernel ends closer to its initialization.
    """
    _check_models(init_distances, "init distance")
    frames = {m: with_norm_growth(init_distances[m]) for m in (BASELINE, CANDIDATE)}
    metrics = [m for m in GEOMETRY_METRICS if all(m in f.columns for f in frames.values())]
    tables = [tidy(frames[m], m, metrics, layer="layer") for m in (BASELINE, CANDIDATE)]
    summarized = [m for m in ("abs", "rel", "norm_growth", "angle") if m in metrics]
    final = {}
    for model in (BASELINE, CANDIDATE):
        frame = frames[model]
        last = frame[frame["step"] == frame["step"].max()]
        final[model] = last.groupby("layer", sort=False)[["step", *summarized]].mean()
    per_layer = {}
    for layer in final[BASELINE].index:
        base, cand = final[BASELINE].loc[layer], final[CANDIDATE].loc[layer]
        per_layer[layer] = {
            **{f"{model}_{metric}": float(row[metric]) for metric in summarized
               for model, row in (("baseline", base), ("candidate", cand))},
            "ratio_abs": float(cand["abs"] / base["abs"]) if base["abs"] != 0 else float("nan"),
        }
    closer = [v["candidate_abs"] < v["baseline_abs"] for v in per_layer.values()]
    summary = {
        "final_step": int(final[BASELINE]["step"].iloc[0]) if len(final[BASELINE]) else 0,
        "layers": per_layer,
        "fraction_layers_candidate_closer": float(np.mean(closer)) if closer else float("nan"),
    }
    return concat_tidy(tables), summary


def gradient_difference_curves(probe_traces: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The data of the paper's Fig 11: how far the gradient moves as the weights move along it.

    Each probe point of ``probe_trace`` (columns ``seed, learning_rate, preset, step, s,
    grad_diff, step_norm``) holds the gradient difference ||grad L(W(s)) - g_t|| at the
    distance ``step_norm`` = |s| * lr * ||g_t|| from the probe's start. Per (model, learning
    rate, preset, measured step, s) this averages both over the seeds, so each curve is one
    (model, measured step) and its x values are s * lr * (the seeds' mean ||g_t||).

    Returns:
        Columns ``model, learning_rate, preset, step, s, distance, grad_diff, seeds``, sorted
        by model, rate, preset, step and distance; empty (same columns) when nothing was probed.
    """
    columns = ["model", "learning_rate", "preset", "step", "s", "distance", "grad_diff", "seeds"]
    frames = []
    for model, trace in probe_traces.items():
        if trace.empty:
            continue
        keys = ["learning_rate", "preset", "step", "s"]
        finite = trace[np.isfinite(trace["grad_diff"]) & np.isfinite(trace["step_norm"])]
        grouped = finite.groupby(keys, sort=True).agg(
            distance=("step_norm", "mean"), grad_diff=("grad_diff", "mean"),
            seeds=("seed", "nunique")).reset_index()
        frames.append(grouped.assign(model=model))
    if not frames:
        return pd.DataFrame(columns=columns)
    table = pd.concat(frames, ignore_index=True)[columns]
    return table.sort_values(["model", "learning_rate", "preset", "step", "distance"],
                             kind="stable", ignore_index=True)
