"""benchmarks/search_plateau_exit.py without training: the exit step of docs/cpu_demo_search.md
(the first step whose trailing mean loss is below 2.0) on losses with a known answer, and the
report's window from conf/base's smoothing fraction."""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests.benchmarks.test_bench_training import _load  # noqa: E402


@pytest.fixture(scope="module")
def search():
    return _load("search_plateau_exit")


def test_the_exit_is_the_last_step_of_the_first_window_below_two(search):
    # chance (2.3) for 100 steps, then 1.0: the 10-step mean of steps t-9..t is
    # (2.3 (109 - t) + 1.0 (t - 99)) / 10, below 2.0 first at t = 102 (1.91; 2.04 at t = 101)
    loss = np.r_[np.full(100, 2.3), np.full(50, 1.0)]
    assert search.exit_step(loss) == 102
    assert search.exit_step(loss, window=20) == 104  # 20 x 2.0 > 2.3 (119 - t) + (t - 99)
    assert search.exit_step(np.full(200, 2.3)) is None
    # the first steps average what they have, as the report's smoothing: (3 x 2.3 + 1.0) / 4
    assert search.exit_step(np.r_[np.full(3, 2.3), np.full(40, 1.0)], window=10) == 3


def test_the_reports_window_is_its_smoothing_fraction_of_the_steps(search):
    assert search.report_window(4914) == 98  # 0.02 x 4,914 = 98.3
    assert search.report_window(10) == 1
