"""Checkpoints: a resumed run ends bit-for-bit as an uninterrupted one; checkpoints of
another configuration or with damaged files are never used. What a checkpoint holds is the
core's (bnstudy.core.checkpoint, no file I/O); the files are bnstudy.reliability.checkpoints'."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from bnstudy.core import PRESETS, TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, train_seeds
from bnstudy.core.checkpoint import (
    CheckpointError,
    _packed,
    _unpacked,
    fingerprint,
    packed_checkpoint,
    unpacked_checkpoint,
)
from bnstudy.reliability.checkpoints import RunCheckpoints, checkpoint_store

# 10 steps in chunks of 4: checkpoints after steps 4, 8 and 10 (checkpoint_every_s=0)
CONFIG = dataclasses.replace(TINY_TRAIN_CONFIG, seeds=(1, 2))
MEASURED = [dataclasses.replace(PRESETS["paper"], measure_every=2)]
TIMES = ("wall_time_s", "compile_time_s")


class Interrupted(Exception):
    pass


def assert_bitwise_equal(results, expected) -> None:
    """Every array and value of every TrainingResult, exactly (timings aside)."""
    assert len(results) == len(expected)
    for got, want in zip(results, expected, strict=True):
        for field in dataclasses.fields(want):
            if field.name not in TIMES:
                jax.tree.map(np.testing.assert_array_equal, getattr(got, field.name),
                             getattr(want, field.name))


def stored(directory):
    """The checkpoints of ``directory`` (None: no checkpoints)."""
    return None if directory is None else checkpoint_store(directory)


def run(arrays, checkpoint_dir=None, presets=(), progress=None, **kwargs):
    return train_seeds(TINY_MODEL_CONFIG, CONFIG, list(presets), *arrays, progress,
                       snapshots=bool(presets), checkpoints=stored(checkpoint_dir),
                       checkpoint_every_s=0, **kwargs)


def calls_into(done_list):
    return lambda done, total, metrics: done_list.append(done)


@pytest.fixture(scope="module")
def plain(tiny_arrays):
    return run(tiny_arrays)


def test_fingerprint_covers_configs_and_data(tiny_arrays):
    x, y, xt, yt = tiny_arrays
    base = fingerprint({"lr": 0.1}, {"x": x, "y": y})
    assert base == fingerprint({"lr": 0.1}, {"x": x.copy(), "y": y.copy()})
    flipped_label = y.copy()
    flipped_label[-1] = (flipped_label[-1] + 1) % 10
    for other in (fingerprint({"lr": 0.2}, {"x": x, "y": y}),
                  fingerprint({"lr": 0.1}, {"x": x, "y": flipped_label}),
                  fingerprint({"lr": 0.1}, {"x": x[:-1], "y": y}),
                  fingerprint({"lr": 0.1}, {"x": x.astype(np.float64), "y": y}),
                  fingerprint({"lr": 0.1}, {"x": x + 1, "y": y})):
        assert other != base


@pytest.mark.slow  # 40 s of compilation of its own programs (a checkpointed configuration)
def test_resume_after_an_interruption_is_bitwise_identical(tiny_arrays, tmp_path):
    """Interrupted after the first checkpoint (step 4), resumed: the run goes on from step
    4 and every array equals the uninterrupted run's; a finished run just reloads."""
    expected = run(tiny_arrays, presets=MEASURED)

    def interrupt(done, total, metrics):
        raise Interrupted(done)

    with pytest.raises(Interrupted):
        run(tiny_arrays, tmp_path, MEASURED, interrupt)
    resumed_calls, finished_calls = [], []
    resumed = run(tiny_arrays, tmp_path, MEASURED, calls_into(resumed_calls))
    assert resumed_calls == [8, 10]  # from the checkpoint after step 4, not from scratch
    assert_bitwise_equal(resumed, expected)
    finished = run(tiny_arrays, tmp_path, MEASURED, calls_into(finished_calls))
    assert finished_calls == []
    assert_bitwise_equal(finished, expected)


def test_a_learning_rate_sweep_resumes_bitwise_and_keys_its_checkpoints_by_its_rates(
        tiny_arrays, tmp_path, caplog):
    """2 seeds x 2 learning rates: interrupted after step 4, resumed from that checkpoint to
    the uninterrupted sweep's every array; another list of rates has another configuration
    hash and starts fresh."""
    sweep = dataclasses.replace(CONFIG, learning_rates=(0.02, 0.05))

    def swept(config, progress=None):
        return train_seeds(TINY_MODEL_CONFIG, config, [], *tiny_arrays, progress,
                           snapshots=False, checkpoints=stored(tmp_path), checkpoint_every_s=0)

    expected = train_seeds(TINY_MODEL_CONFIG, sweep, [], *tiny_arrays, snapshots=False)
    assert [(r.seed, r.learning_rate) for r in expected] == [(1, 0.02), (1, 0.05), (2, 0.02),
                                                             (2, 0.05)]

    def interrupt(done, total, metrics):
        raise Interrupted(done)

    with pytest.raises(Interrupted):
        swept(sweep, interrupt)
    calls = []
    assert_bitwise_equal(swept(sweep, calls_into(calls)), expected)
    assert calls == [8, 10]
    other_rates, calls = dataclasses.replace(sweep, learning_rates=(0.02, 0.06)), []
    with caplog.at_level(logging.WARNING, logger="bnstudy.reliability.checkpoints"):
        swept(other_rates, calls_into(calls))
    assert calls == [4, 8, 10] and "another configuration" in caplog.text
    assert len(list(tmp_path.glob("config-*"))) == 2


@pytest.mark.slow  # compiles the curvature programs of a checkpointed configuration
def test_resume_with_curvature_is_bitwise_identical(tiny_arrays, tmp_path):
    """Curvature before steps 0, 4 and 8: interrupted after the checkpoint at step 4 (before
    the curvature of step 4), the resumed run measures steps 4 and 8 itself and ends with
    the uninterrupted run's arrays, its curvature trace included."""
    config = dataclasses.replace(CONFIG, curvature_every=4, curvature_probe_size=16,
                                 curvature_max_iters=10)

    def curved(checkpoint_dir=None, progress=None):
        return train_seeds(TINY_MODEL_CONFIG, config, [], *tiny_arrays, progress,
                           snapshots=False, checkpoints=stored(checkpoint_dir), checkpoint_every_s=0)

    expected = curved()
    assert expected[0].curvature["steps"].tolist() == [0, 4, 8]

    def interrupt(done, total, metrics):
        raise Interrupted(done)

    with pytest.raises(Interrupted):
        curved(tmp_path, interrupt)
    resumed = curved(tmp_path)
    assert_bitwise_equal(resumed, expected)


KILLED_RUN = """
import dataclasses, sys, time
from pathlib import Path
from bnstudy.core import TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, train_seeds
from bnstudy.reliability.checkpoints import checkpoint_store
from tests.core.conftest import tiny_data

def progress(done, total, metrics):
    Path(sys.argv[2]).write_text(str(done))  # the checkpoint of `done` is complete
    time.sleep(600)

train_seeds(TINY_MODEL_CONFIG, dataclasses.replace(TINY_TRAIN_CONFIG, seeds=(1, 2)), [],
            *tiny_data(), progress, snapshots=False, checkpoints=checkpoint_store(sys.argv[1]),
            checkpoint_every_s=0)
"""


@pytest.mark.slow  # a subprocess that imports JAX and compiles its own programs
def test_a_run_killed_with_sigkill_resumes_bitwise(tiny_arrays, tmp_path, plain):
    root = Path(__file__).resolve().parents[2]
    marker = tmp_path / "checkpointed"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(root)}
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED_RUN),
                              str(tmp_path / "ckpt"), str(marker)], cwd=root, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 600
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), child.stderr.read().decode()[-3000:] if child.poll() else ""
        assert marker.read_text() == "4"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stderr.close()
    calls = []
    resumed = run(tiny_arrays, tmp_path / "ckpt", progress=calls_into(calls))
    assert calls == [8, 10]
    assert_bitwise_equal(resumed, plain)


def test_checkpoints_of_another_configuration_are_never_used(tiny_arrays, tmp_path, plain,
                                                              caplog):
    x, y, xt, yt = tiny_arrays
    relabeled = (x, np.roll(y, 1), xt, yt)
    run(relabeled, tmp_path)  # finished: its last checkpoint is after step 10
    calls = []
    with caplog.at_level(logging.WARNING, logger="bnstudy.reliability.checkpoints"):
        fresh = run(tiny_arrays, tmp_path, progress=calls_into(calls))
    assert calls == [4, 8, 10]
    assert "another configuration" in caplog.text and "Starting fresh" in caplog.text
    assert_bitwise_equal(fresh, plain)
    assert len(list(tmp_path.glob("config-*"))) == 2  # nothing of the other run was touched


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous(tiny_arrays, tmp_path,
                                                                   plain, caplog):
    run(tiny_arrays, tmp_path)
    (directory,) = tmp_path.glob("config-*")
    assert sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) == [8, 10]
    for path in (directory / "10").rglob("*"):
        if path.is_file() and path.stat().st_size > 8:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    calls = []
    with caplog.at_level(logging.WARNING, logger="bnstudy.reliability.checkpoints"):
        resumed = run(tiny_arrays, tmp_path, progress=calls_into(calls))
    assert calls == [10]  # from the checkpoint after step 8
    assert "not usable" in caplog.text and str(directory / "10") in caplog.text
    assert_bitwise_equal(resumed, plain)
    assert sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) == [8, 10]
    assert len(list(directory.glob("unusable-10-*"))) == 1  # set aside, not deleted


def test_arrays_that_fail_the_checksum_are_not_used(tmp_path, caplog):
    """Silent damage (valid orbax files with other values) is caught by the stored SHA-256;
    the previous checkpoint is used."""
    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "step": np.array(3)}
    record = {"loss": np.linspace(0, 1, 5), "empty": np.zeros((2, 0))}
    with RunCheckpoints(tmp_path, "a" * 64) as checkpoints:
        checkpoints.save(1, state, record, {"note": 1})
        checkpoints.save(2, jax.tree.map(lambda a: a + 1, state), record, {"note": 2})
    with RunCheckpoints(tmp_path / "other", "a" * 64) as checkpoints:
        checkpoints.save(2, jax.tree.map(lambda a: a + 2, state), record, {"note": 2})
    target = tmp_path / f"config-{'a' * 16}" / "2" / "arrays"
    shutil.rmtree(target)
    shutil.copytree(tmp_path / "other" / f"config-{'a' * 16}" / "2" / "arrays", target)
    with caplog.at_level(logging.WARNING), RunCheckpoints(tmp_path, "a" * 64) as checkpoints:
        restored = checkpoints.restore(state)
    assert "checksum" in caplog.text
    assert restored.done == 1 and restored.extra == {"note": 1}
    jax.tree.map(np.testing.assert_array_equal, restored.state, state)
    jax.tree.map(np.testing.assert_array_equal, restored.record, record)
    with RunCheckpoints(tmp_path, "b" * 64) as other_config:
        assert other_config.restore(state) is None


def test_packing_round_trips_every_dtype_and_shape_exactly():
    rng = np.random.default_rng(0)
    leaves = [rng.normal(size=(3, 4)).astype(np.float32), np.arange(5, dtype=np.int32),
              np.zeros((0, 7), np.float32), np.array(True), rng.normal(size=2),
              np.array([2**32 - 1, 7], np.uint32), np.asfortranarray(rng.normal(size=(2, 3)))]
    specs = [[list(leaf.shape), leaf.dtype.str] for leaf in leaves]
    packed = _packed(leaves)
    assert packed.dtype == np.uint8 and packed.ndim == 1
    assert packed.size == sum(leaf.nbytes for leaf in leaves)
    for got, want in zip(_unpacked(packed, specs), leaves, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    with pytest.raises(CheckpointError, match="left over"):
        _unpacked(np.concatenate([packed, np.zeros(1, np.uint8)]), specs)
    with pytest.raises(CheckpointError, match="needs bytes"):
        _unpacked(packed[:-1], specs)


def test_a_packed_checkpoint_unpacks_only_for_its_configuration_and_state():
    """The pure part: arrays and JSON in, the same state and record out; another hash, a state
    of another shape or one flipped byte is refused."""
    import json

    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "step": np.array(3)}
    record = {"chunks": {"loss": np.linspace(0, 1, 5)}}
    arrays, meta = packed_checkpoint(4, state, record, {"chunk_seconds": [0.5]}, "a" * 64)
    meta = json.loads(json.dumps(meta))  # what a store keeps is plain JSON
    restored = unpacked_checkpoint(arrays, meta, state, "a" * 64)
    assert restored.done == 4 and restored.extra == {"chunk_seconds": [0.5]}
    jax.tree.map(np.testing.assert_array_equal, restored.state, state)
    jax.tree.map(np.testing.assert_array_equal, restored.record, record)
    with pytest.raises(CheckpointError, match="configuration hash"):
        unpacked_checkpoint(arrays, meta, state, "b" * 64)
    with pytest.raises(CheckpointError, match="state leaf"):
        unpacked_checkpoint(arrays, meta, {**state, "w": np.zeros((3, 2), np.float32)}, "a" * 64)
    flipped = {**arrays, "state": arrays["state"].copy()}
    flipped["state"][0] ^= 1
    with pytest.raises(CheckpointError, match="checksum"):
        unpacked_checkpoint(flipped, meta, state, "a" * 64)


def test_the_core_does_no_file_io_for_checkpoints():
    """bnstudy.core imports no orbax: the checkpoint files are written outside the core."""
    import subprocess

    code = "import sys, bnstudy.core; assert not any(m.startswith('orbax') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
