"""Divergence: a non-finite step stops that seed's updates inside the compiled step, the run
finishes, the other seeds are untouched, and no trace shows a stale value as valid."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from bnstudy.core import PRESETS, TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, Spec, train, train_seeds
from bnstudy.core.state import init_state, seed_keys
from bnstudy.core.step import model_of, train_step
from bnstudy.core.training import epoch_permutations

from .conftest import tiny_data

PAPER_EVERY_2 = [dataclasses.replace(PRESETS["paper"], measure_every=2)]


def test_a_bad_step_freezes_the_state_and_records_its_step():
    """Step 1 sees a NaN input: diverged_at = 1, W_1 is kept, and a finite batch after it
    does not bring the seed back."""
    spec = Spec.of(TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG)
    x, y, _, _ = tiny_data(num_train=8)
    bad_x = x.copy()
    bad_x[3, 0, 0, 0] = np.nan
    step = jax.jit(lambda state, batch: train_step(spec, state, batch))
    state0 = init_state(model_of(TINY_MODEL_CONFIG), TINY_TRAIN_CONFIG, 0)
    state1, metrics0 = step(state0, (x, y))
    state2, metrics1 = step(state1, (bad_x, y))
    state3, _ = step(state2, (x, y))
    assert int(state1.diverged_at) == -1 and np.isfinite(metrics0["train_loss"])
    assert np.isnan(metrics1["train_loss"])
    assert int(state2.diverged_at) == int(state3.diverged_at) == 1
    assert int(state3.step) == 3  # the counter goes on: the executor's batches stay aligned
    for later in (state2, state3):
        jax.tree.map(np.testing.assert_array_equal,
                     jax.device_get((later.params, later.batch_stats, later.opt_state)),
                     jax.device_get((state1.params, state1.batch_stats, state1.opt_state)))
    assert not np.array_equal(state1.params["out"]["kernel"], state0.params["out"]["kernel"])


HUGE_LR = dataclasses.replace(TINY_TRAIN_CONFIG, learning_rate=1000.0, seeds=(0, 1), max_steps=6)


@pytest.fixture(scope="module")
def huge_lr_host(tiny_arrays):
    """lr = 1000, seeds (0, 1), 6 steps, on the host loop with measurements and snapshots."""
    return train_seeds(TINY_MODEL_CONFIG, dataclasses.replace(HUGE_LR, step_loop="host"),
                       PAPER_EVERY_2, *tiny_arrays)


@pytest.fixture(scope="module")
def huge_lr_scan(tiny_arrays):
    """The same on the scan loop, plain (its measured chunk compiles for minutes on a CPU; the
    masking of the measurements is the same host code for both loops)."""
    return train_seeds(TINY_MODEL_CONFIG, dataclasses.replace(HUGE_LR, step_loop="scan"), [],
                       *tiny_arrays, snapshots=False)


@pytest.fixture(scope="module")
def huge_lr(huge_lr_host, huge_lr_scan):
    return huge_lr_host, huge_lr_scan


def _assert_nan_from(values: np.ndarray, steps: np.ndarray, first_nan: int, *,
                     finite_before: bool = True) -> None:
    steps = np.asarray(steps)
    assert np.all(np.isnan(values[steps >= first_nan])), values
    if finite_before:
        assert np.all(np.isfinite(values[steps < first_nan - 1])), values


def _assert_diverged_early(results) -> None:
    for result in results:
        k = result.diverged_at
        assert isinstance(k, int) and 1 <= k <= 4, k
        # train_loss[k] is the loss that diverged (here NaN or huge): kept as computed
        _assert_nan_from(result.train_loss, result.steps, k + 1)
        assert np.all(np.isfinite(result.train_loss[:k]))
        _assert_nan_from(result.train_accuracy, result.steps, k)
        _assert_nan_from(result.test_loss, result.eval_steps, k + 1)
        _assert_nan_from(result.test_accuracy, result.eval_steps, k + 1)
        jax.tree.map(lambda leaf: np.testing.assert_array_equal(np.isfinite(leaf), True),
                     (result.final_params, result.final_batch_stats))


def test_a_huge_learning_rate_diverges_early_and_the_run_finishes(huge_lr_host):
    _assert_diverged_early(huge_lr_host)
    for result in huge_lr_host:
        k, paper = result.diverged_at, result.measurements["paper"]
        assert paper["measured_steps"][0] == 0 and np.all(np.isfinite(paper["ics_l2"][0]))
        for key in ("ics_l2", "ics_cosine", "probe_loss", "grad_diff", "beta_smoothness",
                    "grad_norm"):
            values = paper[key].reshape(len(paper["measured_steps"]), -1)
            # probes of a huge step may overflow before k: only the rows from k are fixed
            _assert_nan_from(values, paper["measured_steps"], k, finite_before=False)
        conv_1 = result.activation_stats["layers"]["conv_1"]
        _assert_nan_from(conv_1["mean"], result.activation_stats["steps"], k)
        assert np.all(conv_1["hist_counts"][result.activation_stats["steps"] >= k] == 0)
        assert np.isnan(result.init_distance["abs"]["conv_1"][-1])


@pytest.mark.slow  # compiles the scan loop's chunk program
def test_the_host_and_scan_loops_diverge_alike(huge_lr):
    _assert_diverged_early(huge_lr[1])
    for host, scan in zip(*huge_lr, strict=True):
        assert host.diverged_at == scan.diverged_at
        for name in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
            a, b = getattr(host, name), getattr(scan, name)
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
            np.testing.assert_allclose(a, b, rtol=1e-4, err_msg=name)


def _poisoned_example(seed_a: int, seed_b: int, steps: int, batch: int, n: int):
    """An example that seed_a trains on at step 1 or 2 and seed_b not in ``steps`` steps."""
    order_a, order_b = (np.asarray(epoch_permutations(seed_keys(s)[1], 1, n))[0]
                        for s in (seed_a, seed_b))
    for position_a in range(batch, 3 * batch):
        example = order_a[position_a]
        if np.flatnonzero(order_b == example)[0] >= steps * batch:
            return int(example), position_a // batch
    return None


@pytest.mark.slow  # two runs of their own programs (about 12 s per loop on two cores)
@pytest.mark.parametrize("loop", ["host", "scan"])
def test_a_diverged_seed_leaves_the_other_seed_as_if_alone(tiny_arrays, loop):
    """One NaN pixel in an example that only seed A meets: A diverges at the step that
    meets it, and B equals its single-seed run."""
    config = dataclasses.replace(TINY_TRAIN_CONFIG, max_steps=4, step_loop=loop)
    found = next((seeds, hit) for seeds in ((1, 2), (3, 4), (5, 6), (7, 8))
                 if (hit := _poisoned_example(*seeds, 4, 8, 40)) is not None)
    (seed_a, seed_b), (example, step) = found
    x_train, y_train, x_test, y_test = tiny_arrays
    poisoned = x_train.copy()
    poisoned[example, 4, 4, 1] = np.nan
    presets, snapshots = (PAPER_EVERY_2, True) if loop == "host" else ([], False)
    together = train_seeds(TINY_MODEL_CONFIG, dataclasses.replace(config, seeds=(seed_a, seed_b)),
                           presets, poisoned, y_train, x_test, y_test, snapshots=snapshots)
    alone = train(TINY_MODEL_CONFIG, dataclasses.replace(config, seed=seed_b), presets,
                  poisoned, y_train, x_test, y_test, snapshots=snapshots)
    assert together[0].diverged_at == step and np.isnan(together[0].train_loss[step])
    assert together[1].diverged_at is None and alone.diverged_at is None
    # host: the same programs one seed after another, bit for bit; scan: vmapped over 2
    # seeds or 1, equal to float rounding (as in test_training)
    def same(a, b):
        if loop == "host" or not np.issubdtype(np.asarray(a).dtype, np.floating):
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)

    for field in dataclasses.fields(alone):
        if field.name not in ("seed", "train_config", "wall_time_s", "compile_time_s"):
            jax.tree.map(same, getattr(together[1], field.name), getattr(alone, field.name))


def test_the_run_record_names_the_step_each_seed_diverged_at(huge_lr_host):
    """The Kedro node's run record carries the status (the core has it per result)."""
    from bnstudy.pipelines.training.nodes import run_record

    record = run_record(huge_lr_host)
    assert {seed: entry["diverged_at"] for seed, entry in record["per_seed"].items()} == \
        {str(r.seed): r.diverged_at for r in huge_lr_host}
    assert all(isinstance(r.diverged_at, int) for r in huge_lr_host)
