"""benchmarks/paper_run.py without training: its settings come from conf/base/globals.yml
with the command line's overrides, and its traces stack the seeds into small arrays."""

from __future__ import annotations

import io
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bnstudy.core import TrainingResult  # noqa: E402
from tests.benchmarks.test_bench_training import _load  # noqa: E402


@pytest.fixture(scope="module")
def paper_run():
    return _load("paper_run")


def test_defaults_are_the_study_yaml(paper_run):
    study_config = _load("study_config")
    args = paper_run.parse_args(["--data", "cifar.tar.gz"])
    for name, normalization in paper_run.MODELS:
        assert paper_run.configs(args, normalization) == study_config.study_configs(
            None, normalization)
    model_config, train_config, presets = paper_run.configs(args, "batch")
    assert train_config.epochs == 39 and train_config.seed_list == (1337,)
    assert [p.name for p in presets] == ["blog", "paper"]
    assert model_config.width_multiplier == 1.0


def test_flags_override_single_settings(paper_run):
    args = paper_run.parse_args(["--data", "x", "--seeds", "0", "1", "2", "--max-steps", "7",
                                 "--measure-every", "50", "--precision", "high",
                                 "--width", "0.125"])
    model_config, train_config, presets = paper_run.configs(args, "none")
    assert model_config.normalization == "none" and model_config.width_multiplier == 0.125
    assert train_config.seed_list == (0, 1, 2) and train_config.max_steps == 7
    assert train_config.matmul_precision == "high"
    assert [p.measure_every for p in presets] == [50, 50]
    assert [p.probe_s for p in presets] == [p.probe_s for p in paper_run.configs(
        paper_run.parse_args(["--data", "x"]), "none")[2]]


def _fake_result(seed: int, steps: int = 12, layers=("conv_0", "out")) -> TrainingResult:
    rng = np.random.default_rng(seed)
    measured = np.arange(0, steps, 4)
    preset = {"measured_steps": measured, "ics_l2": rng.random((3, 2)),
              "ics_cosine": rng.random((3, 2)), "probe_s": np.array([0.5, 2.5]),
              "probe_loss": rng.random((3, 2)), "grad_diff": rng.random((3, 2)),
              "beta_smoothness": rng.random(3), "grad_norm": rng.random(3),
              "ics_l2_leaf": {"conv_0/kernel": rng.random(3)}}
    stats = {key: rng.random(2) for key in ("mean", "std", "min", "max", "frac_positive")}
    stats.update(quantiles=rng.random((2, 7)), hist_counts=np.ones((2, 200), np.int64))
    return TrainingResult(
        seed=seed, learning_rate=0.035, layers=list(layers), leaf_paths=["conv_0/kernel"],
        steps=np.arange(steps),
        train_loss=rng.random(steps), train_accuracy=rng.random(steps),
        eval_steps=np.array([0, steps]), test_loss=rng.random(2), test_accuracy=rng.random(2),
        measurements={"blog": preset, "paper": preset},
        activation_stats={"steps": np.array([0, 6]),
                          "layers": {layer: stats for layer in layers}},
        init_distance={"steps": np.array([0, 6, steps]),
                       "abs": {layer: rng.random(3) for layer in layers},
                       "rel": {layer: rng.random(3) for layer in layers}},
        initial_params={}, initial_batch_stats={}, final_params={}, final_batch_stats={},
        model_config={}, train_config={}, measurement_configs=[])


def test_traces_stack_the_seeds_small(paper_run):
    traces = paper_run.traces("candidate", [_fake_result(0), _fake_result(1)])
    assert traces["candidate/train_loss"].shape == (2, 12)
    assert traces["candidate/train_loss"].dtype == np.float32
    assert traces["candidate/paper/ics_cosine"].shape == (2, 3, 2)
    assert traces["candidate/blog/grad_norm"].shape == (2, 3)
    assert traces["candidate/activations/conv_0/quantiles"].shape == (2, 2, 7)
    assert traces["candidate/init_distance/rel/out"].shape == (2, 3)
    np.testing.assert_array_equal(traces["candidate/steps"], np.arange(12))
    assert traces["candidate/snapshot_steps"].dtype == np.int32
    assert not any("hist_counts" in key or "leaf" in key for key in traces)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **traces)
    assert buffer.tell() < 50_000
