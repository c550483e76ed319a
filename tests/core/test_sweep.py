"""The run axis: seeds x learning rates as one stacked state. Every (seed, learning rate) pair
equals its own single run; a pair that diverges is frozen and masked as a diverged seed is and
leaves the others as they would be alone; one compiled program serves every learning rate."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bnstudy.core import (
    COMPILE_COUNTS,
    PRESETS,
    TINY_MODEL_CONFIG,
    TINY_TRAIN_CONFIG,
    Spec,
    TrainConfig,
    init_state,
    train,
    train_seeds,
)
from bnstudy.core.state import learning_rate_of
from bnstudy.core.step import model_of, train_step
from tests.core.conftest import on_four_devices

from .test_divergence import _assert_diverged_early

SEEDS = (1, 2, 3)
RATES = (0.01, 0.05, 1000.0)  # 1000 diverges within a few steps (test_divergence)
SWEEP = dataclasses.replace(TINY_TRAIN_CONFIG, seeds=SEEDS, learning_rates=RATES, max_steps=6)
PAPER_EVERY_2 = [dataclasses.replace(PRESETS["paper"], measure_every=2)]
# two probe points keep the scan program (every measurement inlined) quick to compile
FEW_POINTS = [dataclasses.replace(PRESETS["paper"], measure_every=2, probe_max=1.0)]
SKIPPED = ("train_config", "wall_time_s", "compile_time_s")


def single(config: TrainConfig, seed: int, rate: float) -> TrainConfig:
    """The configuration of one pair's own run."""
    return dataclasses.replace(config, seed=seed, seeds=(), learning_rate=rate,
                               learning_rates=None)


def assert_pairs_equal_single_runs(sweep, singles, same_for) -> None:
    """Every field of every pair's result against its single run's (``same_for(result)``
    compares two leaves).

    The last entry of ``init_distance`` (||W_T - W_0|| at the end) is compared to rtol 1e-6:
    it is computed once for the whole stacked state (an eager vmap over the run axis, as
    before the run axis existed, so single-rate traces keep their bits), and XLA rounds a
    reduction over [9, ...] differently from one over [1, ...] in the last bit.
    """
    assert [(r.seed, r.learning_rate) for r in sweep] == [(s, r) for s in SEEDS for r in RATES]
    for result, alone in zip(sweep, singles, strict=True):
        assert (alone.seed, alone.learning_rate) == (result.seed, result.learning_rate)
        assert result.train_config == alone.train_config
        same = same_for(result)
        for field in dataclasses.fields(alone):
            if field.name in SKIPPED:
                continue
            got, want = getattr(result, field.name), getattr(alone, field.name)
            if field.name == "init_distance" and want:
                for kind in ("abs", "rel"):
                    jax.tree.map(functools.partial(same_but_the_end, same), got[kind],
                                 want[kind])
                got, want = got["steps"], want["steps"]
            jax.tree.map(same, got, want)


def same_but_the_end(same, got: np.ndarray, want: np.ndarray) -> None:
    same(got[:-1], want[:-1])
    np.testing.assert_allclose(got[-1], want[-1], rtol=1e-6)


def assert_huge_rate_diverged_alone(sweep) -> None:
    diverged = [r for r in sweep if r.learning_rate == 1000.0]
    _assert_diverged_early(diverged)
    assert all(r.diverged_at is None for r in sweep if r.learning_rate != 1000.0)
    losses = {r.learning_rate: r.train_loss for r in sweep if r.seed == SEEDS[0]}
    assert not np.allclose(losses[0.01], losses[0.05])  # the rates do act


def test_the_learning_rate_leaf_steps_exactly_as_a_constant_learning_rate():
    """The pure step with the learning rate and momentum as state leaves
    (optax.inject_hyperparams) against optax.sgd with constants: the weights bit for bit
    after 5 steps (a float32 leaf multiplies as the float32 constant did)."""
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype(np.float32)
    y = np.arange(8, dtype=np.int32) % 10
    config = dataclasses.replace(TINY_TRAIN_CONFIG, learning_rate=0.07, momentum=0.8)
    spec, model = Spec.of(TINY_MODEL_CONFIG, config), model_of(TINY_MODEL_CONFIG)
    state = init_state(model, config, 4)
    assert float(learning_rate_of(state)) == np.float32(0.07)
    assert learning_rate_of(state).dtype == jnp.float32
    reference = optax.sgd(0.07, momentum=0.8)
    params, opt_state, batch_stats = state.params, reference.init(state.params), state.batch_stats

    @jax.jit
    def reference_step(params, opt_state, batch_stats):
        (_, forward), grads = jax.value_and_grad(
            lambda p: model.loss(p, batch_stats, x, y, train=True), has_aux=True)(params)
        updates, opt_state = reference.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, forward.batch_stats

    step = jax.jit(lambda s: train_step(spec, s, (x, y))[0])
    with jax.default_matmul_precision(config.matmul_precision):
        for _ in range(5):
            state = step(state)
            params, opt_state, batch_stats = reference_step(params, opt_state, batch_stats)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params),
                 jax.device_get(params))
    # the running statistics do not pass through the optimizer; the engine's step is another
    # program (it also guards divergence), which XLA may fuse with other last-bit rounding
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9),
                 jax.device_get(state.batch_stats), jax.device_get(batch_stats))


def test_the_compile_key_holds_no_learning_rate_momentum_seed_or_cadence():
    base = Spec.of(TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG)
    run_only = dataclasses.replace(TINY_TRAIN_CONFIG, learning_rate=0.5, learning_rates=(0.1, 1.0),
                                   momentum=0.0, seeds=(4, 5), epochs=9, eval_every=8,
                                   snapshot_every=5, curvature_every=4, eval_batch_size=4)
    assert Spec.of(TINY_MODEL_CONFIG, run_only) == base
    assert hash(Spec.of(TINY_MODEL_CONFIG, run_only)) == hash(base)
    for shaping in ({"batch_size": 4}, {"nesterov": True}, {"histogram_bins": 3},
                    {"matmul_precision": "default"}):
        assert Spec.of(TINY_MODEL_CONFIG, dataclasses.replace(TINY_TRAIN_CONFIG, **shaping)) \
            != base, shaping


@pytest.fixture(scope="module")
def host_singles(tiny_arrays):
    """Each pair's own run on the host loop, with the paper protocol and snapshots."""
    return [train(TINY_MODEL_CONFIG, single(SWEEP, seed, rate), PAPER_EVERY_2, *tiny_arrays)
            for seed in SEEDS for rate in RATES]


def test_each_pair_of_a_host_sweep_is_bitwise_its_single_run(tiny_arrays, host_singles):
    """3 seeds x 3 learning rates on the host loop, one rate diverging: every array of
    every pair (healthy or diverged) equals its single run exactly (the host loop runs the
    same programs on each pair's own state), and the sweep compiles no program of its own."""
    compiled = dict(COMPILE_COUNTS)
    sweep = train_seeds(TINY_MODEL_CONFIG, dataclasses.replace(SWEEP, step_loop="host"),
                        PAPER_EVERY_2, *tiny_arrays)
    assert dict(COMPILE_COUNTS) == compiled  # one program serves every learning rate
    assert_pairs_equal_single_runs(sweep, host_singles,
                                   lambda result: np.testing.assert_array_equal)
    assert_huge_rate_diverged_alone(sweep)


@pytest.mark.slow  # compiles the measured scan chunk twice (vmapped over 9 runs and over 1)
def test_each_pair_of_a_scan_sweep_equals_its_single_run(tiny_arrays):
    """The same on the scan loop (runs vmapped): to float rounding, rtol 1e-5 (XLA batches
    a vmap over 9 runs differently from one over 1, so the last bits may differ). atol 1e-6:
    conv_0's train-mode ICS is rounding noise of ~1e-7 (there G' = G in exact arithmetic).
    A diverged pair diverges at the same step as alone and is masked from there (as
    test_divergence checks a diverged seed); its values are not compared: lr 1000 blows the
    last-bit differences up to O(1) within a step (the loss grows 1e8-fold, a probe may
    overflow in one run and not the other), so only the host loop, bit for bit, can."""
    config = dataclasses.replace(SWEEP, step_loop="scan")
    sweep = train_seeds(TINY_MODEL_CONFIG, config, FEW_POINTS, *tiny_arrays, snapshots=False)
    singles = [train(TINY_MODEL_CONFIG, single(config, seed, rate), FEW_POINTS, *tiny_arrays,
                     snapshots=False) for seed in SEEDS for rate in RATES]
    assert_pairs_equal_single_runs(sweep, singles, lambda result: functools.partial(
        close, values=result.diverged_at is None))
    assert_huge_rate_diverged_alone(sweep)


def close(a, b, *, values: bool) -> None:
    """Floats (if ``values``) with the same NaNs to rtol 1e-5, atol 1e-6; the rest exactly."""
    if not np.issubdtype(np.asarray(a).dtype, np.floating):
        np.testing.assert_array_equal(a, b)
    elif values:
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


SHARDED_SWEEP = """
import dataclasses, numpy as np, jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from bnstudy.core import PRESETS, TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, train, train_seeds
from tests.core.conftest import tiny_data
assert jax.device_count() == 4, jax.devices()
config = dataclasses.replace(TINY_TRAIN_CONFIG, seeds=(1, 2), learning_rates=(0.02, 1000.0),
                             max_steps=4, step_loop="scan")
paper = [dataclasses.replace(PRESETS["paper"], measure_every=2, probe_max=1.0)]
mesh = Mesh(np.array(jax.devices()), ("run",))
shard = lambda tree: jax.device_put(tree, NamedSharding(mesh, PartitionSpec("run")))
data = tiny_data()
sharded = train_seeds(TINY_MODEL_CONFIG, config, paper, *data, shard=shard, snapshots=False)
for result in sharded:
    alone = train(TINY_MODEL_CONFIG, dataclasses.replace(
        config, seed=result.seed, seeds=(), learning_rate=result.learning_rate,
        learning_rates=None), paper, *data, snapshots=False)
    assert result.diverged_at == alone.diverged_at, (result.diverged_at, alone.diverged_at)
    assert (result.diverged_at is None) == (result.learning_rate == 0.02)
    if result.diverged_at is not None:  # masked; lr 1000 blows rounding up (test above)
        assert np.isnan(result.train_loss[result.diverged_at + 1:]).all()
        assert np.isnan(result.test_loss[-1])
        continue
    for a, b in ((result.train_loss, alone.train_loss), (result.test_loss, alone.test_loss),
                 (result.measurements["paper"]["ics_l2"], alone.measurements["paper"]["ics_l2"]),
                 (result.measurements["paper"]["probe_loss"],
                  alone.measurements["paper"]["probe_loss"])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6),
                 result.final_params, alone.final_params)
print("SHARDED-SWEEP-EQUAL", len(sharded))
"""


@pytest.mark.slow  # a subprocess with 4 virtual devices compiles the scan program twice
def test_a_sweep_sharded_over_four_devices_equals_the_single_runs():
    """2 seeds x 2 learning rates (one diverging), one run per device: each pair equals its
    own unsharded single run (rtol 1e-5; a diverging pair diverges at the same step)."""
    assert "SHARDED-SWEEP-EQUAL 4" in on_four_devices(SHARDED_SWEEP)
