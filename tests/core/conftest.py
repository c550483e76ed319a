"""Core tests run on the CPU with tiny networks (a few convs of width 4-8, 8x8 images)."""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def tiny_data(dtype=np.float32, num_train: int = 40, num_test: int = 21, side: int = 8, seed: int = 0):
    """Random normalized images and labels: 40 train (5 batches of 8), 21 test (a partial
    eval batch of 5 after one of 16)."""
    rng = np.random.default_rng(seed)
    x_train = rng.normal(size=(num_train, side, side, 3)).astype(dtype)
    y_train = rng.integers(0, 10, num_train).astype(np.int32)
    x_test = rng.normal(size=(num_test, side, side, 3)).astype(dtype)
    y_test = rng.integers(0, 10, num_test).astype(np.int32)
    return x_train, y_train, x_test, y_test


@pytest.fixture(scope="session")
def tiny_arrays():
    return tiny_data()


def on_four_devices(script: str, timeout_s: float = 1200) -> str:
    """Run ``script`` (Python source) in a fresh process with 4 virtual CPU devices (the
    device count is fixed when JAX starts) and return its stdout; fail with its stderr."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=timeout_s, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout
