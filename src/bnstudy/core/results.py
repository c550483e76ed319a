"""What a training run records, as numpy arrays: :class:`TrainingResult`, and its
collection from the executor's per-step outputs (steps chosen by the plan)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from bnstudy.core.config import ModelConfig
from bnstudy.core.measurements import QUANTILE_LEVELS, histogram_edges
from bnstudy.core.normalization import WITHOUT_LAYER
from bnstudy.core.plan import MeasurementPlan


@dataclasses.dataclass
class TrainingResult:
    """Everything one run (a seed and a learning rate) records, as numpy arrays and plain
    values.

    Shapes: T trained steps, E evaluations, L layers, M measured steps of a preset,
    S probe points of a preset, K activation snapshots, C_l channels of layer l.

    Attributes:
        seed: the seed of this run.
        learning_rate: its learning rate (one of ``TrainConfig.learning_rate_list``).
        layers: layer names in forward order, [L].
        leaf_paths: trainable leaf names ("conv_3/kernel", "conv_3/bn_scale", ...).
        steps: [T] int, 0-based index t of each trained step.
        train_loss: [T] train-mode loss at W_t on the step's batch (the loss whose gradient
            is applied).
        train_accuracy: [T] eval-mode accuracy at (W_{t+1}, S_{t+1}) on the same batch.
        eval_steps: [E] completed steps when the test set was evaluated (plan.eval_steps).
        test_loss, test_accuracy: [E] eval-mode mean loss / accuracy over the test set.
        measurements: {preset name: dict} with measured_steps [M] (plan.measured_steps),
            ics_l2 [M, L], ics_cosine [M, L], ics_l2_leaf / ics_cosine_leaf {leaf: [M]},
            probe_s [S], probe_loss [M, S], grad_diff [M, S], step_norm [M, S],
            beta_smoothness [M], probe_loss_min / _max [M], grad_diff_min / _max [M],
            grad_norm [M] (||g_t||), config (the preset as a dict).
        activation_stats: {"steps": [K], "quantile_levels": [7], "hist_edges": [bins + 1],
            "layers": {layer: {mean, std, min, max, frac_positive, underflow, overflow: [K];
            quantiles [K, 7]; hist_counts [K, bins]; channel_mean, channel_var [K, C_l]}}}.
        init_distance: {"steps": [K + 1] (snapshot steps, then T), kind: {layer: [K + 1]}}
            with the kinds of :func:`bnstudy.core.measurements.distance_from_init` (abs
            ||W - W_0||_F, rel that over ||W_0||_F, norm ||W||_F, angle to W_0 in radians)
            and of :func:`bnstudy.core.step.normalization_scales` (gamma, sigma,
            gamma_over_sigma; NaN at T, which has no batch, and without a normalization).
        initial_params, initial_batch_stats, final_params, final_batch_stats: nested dicts.
        model_config, train_config: the configs as dicts (train_config that of the single
            run this one equals: its seed and learning rate); measurement_configs: list.
        wall_time_s: seconds of the whole stacked run (all runs); compile_time_s: seconds of the
            first chunk beyond the median chunk (an estimate of compilation).
        run_devices: the devices the stacked run's state was sharded over (1: one device;
            ``TrainConfig.devices`` or ``shard=``).
        moment_points: the points the steps and measurements ran on in place of the samples
            (``TrainConfig.moment_set``: :func:`bnstudy.core.moments.moment_set`); None: the
            samples themselves.
        diverged_at: None for a healthy run; else the first step k whose loss, gradient or
            update was not finite. Training stopped there: final_params / final_batch_stats
            are W_k (the last finite state), and every value of steps t >= k is NaN (integer
            histogram counts 0) except train_loss[k], the loss that diverged; evaluations
            after step k and the final init_distance entry are NaN.
        curvature: {} without curvature; else "steps" [C] (t: measured at W_t before step t)
            and [C] arrays lambda_max, power_iterations, converged (1.0 / 0.0), probe_loss,
            batch_sharpness, batch_loss, batch_grad_norm (bnstudy.core.curvature).
    """

    seed: int
    learning_rate: float
    layers: list[str]
    leaf_paths: list[str]
    steps: np.ndarray
    train_loss: np.ndarray
    train_accuracy: np.ndarray
    eval_steps: np.ndarray
    test_loss: np.ndarray
    test_accuracy: np.ndarray
    measurements: dict[str, dict[str, Any]]
    activation_stats: dict[str, Any]
    init_distance: dict[str, Any]
    initial_params: dict[str, Any]
    initial_batch_stats: dict[str, Any]
    final_params: dict[str, Any]
    final_batch_stats: dict[str, Any]
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    measurement_configs: list[dict[str, Any]]
    wall_time_s: float = 0.0
    compile_time_s: float = 0.0
    run_devices: int = 1
    moment_points: int | None = None
    diverged_at: int | None = None
    curvature: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def _extremes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if values.shape[0] == 0:
        return values[:, 0], values[:, 0]
    return values.min(axis=1), values.max(axis=1)


def undefined_ics_leaves(model_config: ModelConfig) -> set[str]:
    """Leaves whose per-leaf ICS is undefined and is dropped: the bias of a conv followed
    by BatchNorm (or a mean-centred Lp normalization). BN subtracts the batch mean, so that
    bias has no effect on the loss; its gradient is float rounding noise (not exactly 0), and
    a cosine of noise is meaningless. Without a layer (``none``, and ``noisy``, whose
    ``s a + m`` scales and shifts the conv's output but subtracts no batch mean) the bias acts
    on the loss and its ICS is defined.

    The DLN has no biases; there it is the shift (``bn_bias``) of a normalization whose
    output reaches the next layer's normalization through a linear map only (every layer but
    the last two): the next normalization subtracts it with the batch mean. Not with
    ``batch_noisy``, whose per-example scale s makes the shift differ between examples."""
    if model_config.normalization in WITHOUT_LAYER:
        return set()
    if model_config.family == "dln":
        if model_config.normalization == "batch_noisy":
            return set()
        return {f"linear_{i}/bn_bias" for i in range(model_config.depth - 2)}
    return {f"conv_{i}/bias" for i in range(len(model_config.conv_features))}


def collect_measurements(plan: MeasurementPlan, model_config: ModelConfig,
                         outputs: dict[str, Any], leaf_names: list[str],
                         learning_rate: float) -> dict[str, Any]:
    """Each preset's rows of the per-step outputs [T, ...] (one run). ``grad_norm`` is
    recovered from the first probe point's step norm |s_0| * lr * ||g_t||."""
    collected = {}
    undefined = undefined_ics_leaves(model_config)
    for preset in plan.presets:
        rows = plan.measured_steps(preset)
        ics = outputs[plan.ics_of(preset, model_config).name]
        probe = outputs[plan.probe_of(preset, model_config).name]
        loss, grad_diff = probe["loss"][rows], probe["grad_diff"][rows]
        s_values = np.asarray(preset.probe_s)
        loss_min, loss_max = _extremes(loss)
        diff_min, diff_max = _extremes(grad_diff)
        step_norm = probe["step_norm"][rows]
        collected[preset.name] = {
            "config": preset.to_dict(), "measured_steps": rows,
            "ics_l2": ics["l2_layer"][rows], "ics_cosine": ics["cosine_layer"][rows],
            "ics_l2_leaf": {n: ics["l2_leaf"][rows, i] for i, n in enumerate(leaf_names)
                            if n not in undefined},
            "ics_cosine_leaf": {n: ics["cosine_leaf"][rows, i]
                                for i, n in enumerate(leaf_names) if n not in undefined},
            "probe_s": s_values, "probe_loss": loss, "grad_diff": grad_diff,
            "step_norm": step_norm, "beta_smoothness": probe["beta_smoothness"][rows],
            "grad_norm": step_norm[:, 0] / (abs(s_values[0]) * learning_rate),
            "probe_loss_min": loss_min, "probe_loss_max": loss_max,
            "grad_diff_min": diff_min, "grad_diff_max": diff_max,
        }
    return collected


def collect_snapshots(plan: MeasurementPlan, train_config, outputs: dict[str, Any],
                      layers: list[str], final_distance: dict[str, Any]):
    """(activation_stats, init_distance) of one run from its per-step outputs, whose snapshot
    holds one row per snapshot step (:meth:`bnstudy.core.recorder.Recorder.chunk`)."""
    rows = plan.snapshot_steps()
    snapshot = outputs["snapshot"]
    activation_stats = {
        "steps": rows,
        "quantile_levels": np.asarray(QUANTILE_LEVELS),
        "hist_edges": np.asarray(histogram_edges(train_config.histogram_bins,
                                                 train_config.histogram_range,
                                                 dtype=outputs["train_loss"].dtype)),
        "layers": {layer: {stat: values for stat, values in stats.items()}
                   for layer, stats in snapshot["activations"].items()},
    }
    distance = snapshot["init_distance"]

    def final(kind: str, layer: str):
        # the scales need a batch, which the end of training has not: NaN at the final row
        if kind in final_distance:
            return final_distance[kind][layer]
        return np.full((), np.nan, np.asarray(distance[kind][layer]).dtype)

    init_distance = {
        "steps": np.append(rows, plan.total_steps),
        **{kind: {layer: np.append(values[layer], final(kind, layer)) for layer in layers}
           for kind, values in distance.items()},
    }
    return activation_stats, init_distance
