"""A model's training results as the tables and records the pipelines persist.

:func:`model_traces` turns the core's :class:`~bnstudy.core.TrainingResult` of every run (each
(seed, learning rate) pair) into one long-format table per measurement (:data:`TABLES`), each
row with its ``seed`` and ``learning_rate`` and the run's divergence columns (:func:`marked`);
:func:`by_run` keys the states and activation histograms by run; :func:`run_record` is the
run's resolved configs, seeds, learning rates and final numbers. Pure pandas/NumPy: the
training node calls these and the analysis, the report and the MLflow payload read what they
made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bnstudy.runs import learning_rate_key

if TYPE_CHECKING:  # the results' type only: these tables need no JAX
    from bnstudy.core import TrainingResult

QUANTILE_COLUMNS = ("q01", "q05", "q25", "q50", "q75", "q95", "q99")


def model_traces(results: list[TrainingResult]) -> dict[str, pd.DataFrame]:
    """Every table of :data:`TABLES`, each over every run of the model (:func:`marked`)."""
    return {name: pd.concat([marked(table(result), result) for result in results],
                            ignore_index=True)
            for name, table in TABLES.items()}


def marked(table: pd.DataFrame, result: TrainingResult) -> pd.DataFrame:
    """A run's trace with its ``seed`` and ``learning_rate`` columns first and its divergence
    columns last: ``diverged`` is True from the step the run diverged at (its first
    non-finite loss or gradient) on, where the values are NaN and mean nothing;
    ``diverged_at`` is that step on every row of the run (-1: healthy)."""
    step = -1 if result.diverged_at is None else int(result.diverged_at)
    bad = np.zeros(len(table), bool) if step < 0 else table["step"].to_numpy() >= step
    return pd.concat([pd.DataFrame({"seed": np.full(len(table), result.seed),
                                    "learning_rate": np.full(len(table), float(result.learning_rate))}),
                      table.reset_index(drop=True)], axis=1).assign(diverged=bad, diverged_at=step)


def is_sweep(results: list[TrainingResult]) -> bool:
    """Whether the runs have more than one learning rate."""
    return len({r.learning_rate for r in results}) > 1


def run_name(result: TrainingResult, sweep: bool) -> str:
    """``seed_<k>``, or ``seed_<k>/lr_<x>`` in a learning-rate sweep: a run's key in the
    states, histograms, run record and MLflow (the path its arrays have in an ``.npz``)."""
    return run_key(result.seed, result.learning_rate, sweep)


def run_key(seed: int, learning_rate: float, sweep: bool) -> str:
    """:func:`run_name` of the run with ``seed`` and ``learning_rate``."""
    return f"seed_{seed}/{learning_rate_key(learning_rate)}" if sweep else f"seed_{seed}"


def by_run(results: list[TrainingResult], value_of: Any) -> dict[str, Any]:
    """``{"seed_<k>": value}``; with a learning-rate sweep ``{"seed_<k>": {"lr_<x>": value}}``
    (nested, so the NpzDataset stores it under ``seed_<k>/lr_<x>/...`` and loads it back as
    it was)."""
    sweep, keyed = is_sweep(results), {}
    for result in results:
        seed = f"seed_{result.seed}"
        if sweep:
            keyed.setdefault(seed, {})[learning_rate_key(result.learning_rate)] = value_of(result)
        else:
            keyed[seed] = value_of(result)
    return keyed


def model_state(params: dict[str, Any], batch_stats: dict[str, Any]) -> dict[str, Any]:
    """``{"params": ..., "batch_stats": ...}``; the baseline has no batch statistics, and
    an empty entry is left out (an .npz file cannot hold an empty dict)."""
    return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def training_trace(result: TrainingResult) -> pd.DataFrame:
    """``step, train_loss, train_accuracy``: one row per trained step."""
    return pd.DataFrame(
        {"step": result.steps, "train_loss": result.train_loss, "train_accuracy": result.train_accuracy}
    )


def eval_trace(result: TrainingResult) -> pd.DataFrame:
    """``step, test_loss, test_accuracy``: one row per evaluation of the full test set."""
    return pd.DataFrame(
        {"step": result.eval_steps, "test_loss": result.test_loss, "test_accuracy": result.test_accuracy}
    )


def ics_trace(result: TrainingResult) -> pd.DataFrame:
    """``preset, step, layer, param, ics_l2, ics_cosine``.

    ``param`` is ``"all"`` for the whole layer (all its leaves together) or the leaf name
    (``kernel``, ``bias``, ``bn_scale``, ...).
    """
    frames = []
    for preset, trace in result.measurements.items():
        steps = trace["measured_steps"]
        for index, layer in enumerate(result.layers):
            frames.append(
                _long_block(preset, steps, layer, "all", trace["ics_l2"][:, index], trace["ics_cosine"][:, index])
            )
        for leaf, values in trace["ics_l2_leaf"].items():
            layer, param = leaf.split("/", 1)
            frames.append(_long_block(preset, steps, layer, param, values, trace["ics_cosine_leaf"][leaf]))
    return _concat(frames, ["preset", "step", "layer", "param", "ics_l2", "ics_cosine"])


def _long_block(preset, steps, layer, param, l2, cosine) -> pd.DataFrame:
    return pd.DataFrame(
        {"preset": preset, "step": steps, "layer": layer, "param": param, "ics_l2": l2, "ics_cosine": cosine}
    )


def probe_trace(result: TrainingResult) -> pd.DataFrame:
    """``preset, step, s, probe_loss, grad_diff, step_norm``: every probe point of every step."""
    frames = []
    for preset, trace in result.measurements.items():
        steps, s = trace["measured_steps"], np.asarray(trace["probe_s"])
        frames.append(
            pd.DataFrame(
                {
                    "preset": preset,
                    "step": np.repeat(steps, s.size),
                    "s": np.tile(s, steps.size),
                    "probe_loss": trace["probe_loss"].reshape(-1),
                    "grad_diff": trace["grad_diff"].reshape(-1),
                    "step_norm": trace["step_norm"].reshape(-1),
                }
            )
        )
    return _concat(frames, ["preset", "step", "s", "probe_loss", "grad_diff", "step_norm"])


SMOOTHNESS_COLUMNS = (
    "probe_loss_min", "probe_loss_max", "grad_diff_min", "grad_diff_max", "beta_smoothness", "grad_norm",
)


def smoothness_trace(result: TrainingResult) -> pd.DataFrame:
    """``preset, step`` + the per-step extremes over s and the effective beta-smoothness."""
    frames = [
        pd.DataFrame({"preset": preset, "step": trace["measured_steps"], **{c: trace[c] for c in SMOOTHNESS_COLUMNS}})
        for preset, trace in result.measurements.items()
    ]
    return _concat(frames, ["preset", "step", *SMOOTHNESS_COLUMNS])


def activation_table(result: TrainingResult) -> pd.DataFrame:
    """``step, layer, mean, std, min, max, q01..q99, frac_positive, underflow, overflow``."""
    stats = result.activation_stats
    steps = stats["steps"]
    frames = []
    for layer, values in stats["layers"].items():
        columns = {"step": steps, "layer": layer}
        for name in ("mean", "std", "min", "max"):
            columns[name] = values[name]
        for index, name in enumerate(QUANTILE_COLUMNS):
            columns[name] = values["quantiles"][:, index]
        for name in ("frac_positive", "underflow", "overflow"):
            columns[name] = values[name]
        frames.append(pd.DataFrame(columns))
    return _concat(frames, ["step", "layer"])


def activation_histograms(result: TrainingResult) -> dict[str, Any]:
    """The array part of the activation statistics, for the NpzDataset:
    ``{steps [K], hist_edges [bins+1], quantile_levels [7], layers: {layer: {hist_counts
    [K, bins], channel_mean [K, C], channel_var [K, C]}}}``."""
    stats = result.activation_stats
    return {
        "steps": np.asarray(stats["steps"]),
        "hist_edges": np.asarray(stats["hist_edges"]),
        "quantile_levels": np.asarray(stats["quantile_levels"]),
        "layers": {
            layer: {k: np.asarray(values[k]) for k in ("hist_counts", "channel_mean", "channel_var")}
            for layer, values in stats["layers"].items()
        },
    }


def effective_learning_rate(learning_rate, norm):
    """``learning_rate / norm^2``: for a kernel whose loss is invariant to its scale (a conv
    before a normalization), ``grad L(cW) = grad L(W) / c``, so an SGD step of lr moves its
    direction W / ||W|| as a step of lr / ||W||^2 would at unit norm (Santurkar et al.,
    Thm 4.1; Lyu, Li & Arora 2022). Works on arrays and scalars alike."""
    return learning_rate / (norm * norm)


INIT_DISTANCE_COLUMNS = ("step", "layer", "abs", "rel", "norm", "angle", "effective_lr",
                         "gamma", "sigma", "gamma_over_sigma")
"""The columns of :func:`init_distance_table`."""


def init_distance_table(result: TrainingResult) -> pd.DataFrame:
    """``step, layer, abs, rel, norm, angle, effective_lr, gamma, sigma, gamma_over_sigma``
    at each snapshot and at the end, per layer: the kernel's ``||W - W_0||_F`` (``abs``),
    that over ``||W_0||_F`` (``rel``), ``||W||_F`` (``norm``), its angle to W_0 in radians,
    the effective learning rate ``lr / ||W||_F^2`` (Santurkar et al., Thm 4.1; Lyu, Li &
    Arora 2022: the step a scale-invariant kernel takes on the unit sphere; the run's lr,
    momentum left out) and, for a layer with a normalization layer, its mean |gamma|, batch
    sigma and |gamma| / sigma (NaN elsewhere and at the end, which has no batch)."""
    distance = result.init_distance
    frames = []
    for layer in distance["abs"]:
        columns = {"step": distance["steps"], "layer": layer}
        for kind in INIT_DISTANCE_COLUMNS[2:]:
            columns[kind] = (effective_learning_rate(result.learning_rate, distance["norm"][layer])
                             if kind == "effective_lr" else distance[kind][layer])
        frames.append(pd.DataFrame(columns))
    return _concat(frames, list(INIT_DISTANCE_COLUMNS))


CURVATURE_COLUMNS = ("step", "lambda_max", "power_iterations", "converged", "probe_loss",
                     "batch_sharpness", "batch_loss", "batch_grad_norm", "hessian_trace",
                     "hessian_trace_se")


def curvature_trace(result: TrainingResult) -> pd.DataFrame:
    """``step, lambda_max, power_iterations, converged, probe_loss, batch_sharpness,
    batch_loss, batch_grad_norm, hessian_trace, hessian_trace_se`` (NaN when
    ``training.curvature_trace_samples`` is 0): one row per curvature measurement (none when
    ``training.curvature_every`` is null). A seed that had diverged before a measurement
    has NaN values there and a missing (``<NA>``) iteration count and convergence flag:
    nullable ``Int64`` and ``boolean`` columns, never a made-up count or flag."""
    curvature = result.curvature
    if not curvature:
        return _concat([], list(CURVATURE_COLUMNS))
    table = pd.DataFrame({"step" if c == "step" else c: curvature["steps" if c == "step" else c]
                          for c in CURVATURE_COLUMNS})
    return table.astype({"power_iterations": "Int64", "converged": "boolean"})


def run_record(results: list[TrainingResult]) -> dict[str, Any]:
    """Resolved configs, seeds, learning rates and timings.

    The configs are those of the run (``train_config`` lists every seed and, in a sweep,
    every learning rate); ``seeds`` and ``learning_rates`` list them once each; ``per_seed``
    holds each run's final test numbers, its learning rate and ``diverged_at`` (the step it
    diverged at, None when healthy), keyed by the seed (``"<k>"``), or in a learning-rate
    sweep by ``"<k>/lr_<x>"`` (:func:`run_name` without ``seed_``). The headline final
    numbers are means over every run. Values may be numpy scalars and arrays: the node makes
    the record JSON-ready.
    """
    first, sweep = results[0], is_sweep(results)
    seeds = list(dict.fromkeys(r.seed for r in results))
    rates = list(dict.fromkeys(r.learning_rate for r in results))
    return {
        "model_config": first.model_config,
        "train_config": {**first.train_config, "seeds": seeds,
                         "learning_rates": rates if sweep else None},
        "measurement_configs": first.measurement_configs,
        "seeds": seeds,
        "learning_rates": rates,
        "layers": first.layers,
        "leaf_paths": first.leaf_paths,
        "num_steps": int(first.steps.size),
        "wall_time_s": first.wall_time_s,
        "compile_time_s": first.compile_time_s,
        "run_devices": first.run_devices,
        "moment_points": first.moment_points,
        "final_test_accuracy": float(np.mean([r.test_accuracy[-1] for r in results])),
        "final_test_loss": float(np.mean([r.test_loss[-1] for r in results])),
        "per_seed": {
            run_name(r, sweep).removeprefix("seed_"): {
                "learning_rate": float(r.learning_rate),
                "final_test_accuracy": float(r.test_accuracy[-1]),
                "final_test_loss": float(r.test_loss[-1]),
                "diverged_at": r.diverged_at,
            }
            for r in results
        },
    }


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    return pd.concat(frames, ignore_index=True)


TABLES = {
    "training_trace": training_trace,
    "eval_trace": eval_trace,
    "ics_trace": ics_trace,
    "probe_trace": probe_trace,
    "smoothness_trace": smoothness_trace,
    "activation_stats": activation_table,
    "init_distance": init_distance_table,
    "curvature_trace": curvature_trace,
}
"""The per-run tables of a training result, by output name."""
