"""The benchmark runs end to end on the test-size config: every column, a sane table, and the
seed-style reference agreeing with the compiled path."""

from __future__ import annotations

import copy
import importlib.util
import io
import os
import sys
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load("bench_training")


@pytest.fixture(scope="module")
def summary_and_output(bench):
    out = io.StringIO()
    summary = bench.run("test", steps=2, repeats=2, reference=True, out=out)
    return summary, out.getvalue()


def test_table_has_every_column_and_row(bench, summary_and_output):
    summary, out = summary_and_output
    header = next(line for line in out.splitlines() if "steps/s" in line)
    for column in bench.COLUMNS:
        assert column in header
    rows = {row["path"]: row for row in summary["table"]}
    assert set(rows) == {"plain", "measured (blog+paper)", "seed-style reference"}
    for name in ("plain", "measured (blog+paper)"):
        row = rows[name]
        assert row["steps/s"] > 0 and row["compile s"] >= 0 and row["peak RSS MB"] > 10
        assert row["GFLOP/step"] > 0
        np.testing.assert_allclose(row["GFLOP/s"], row["GFLOP/step"] * row["steps/s"])
    assert "measurement efficiency" in out and "speed vs seed-style reference" in out


def test_measured_step_counts_the_measurement_arithmetic(summary_and_output):
    summary, _ = summary_and_output
    # Per measured step of the tiny net: 23 probe points and the ICS (a suffix pass per layer
    # in 2 modes) each cost about one forward+backward pass; the plain step one, plus the
    # eval-mode forward pass for the batch accuracy. So the FLOP ratio lies well above 15.
    assert 15 < summary["flop_ratio"] < 40
    np.testing.assert_allclose(summary["efficiency"],
                               summary["time_ratio"] / summary["flop_ratio"])


def test_seed_style_reference_agrees(summary_and_output):
    summary, out = summary_and_output
    assert summary["agreement"] is True and summary["agreement_steps"] >= 2
    assert summary["agreement_worst"] <= 1.0
    assert "agreement check" in out and "PASS" in out


def test_agreement_check_catches_a_wrong_measurement(bench):
    """The check must fail when one ICS value is off by 1%."""
    from bnstudy.core import TINY_MODEL_CONFIG, TrainConfig
    config = TrainConfig(batch_size=8, eval_batch_size=8)
    x, y = bench.synthetic_data(TINY_MODEL_CONFIG, 64)
    presets = list(bench.PRESET_LIST)
    runners = {"core": bench.CoreRunner(TINY_MODEL_CONFIG, config, presets, x, y, steps=2),
               "reference": bench.ReferenceRunner(TINY_MODEL_CONFIG, config, presets, x, y)}
    timings = bench.measure(runners, repeats=1)
    core, reference = timings["core"], timings["reference"]
    assert bench.check_agreement(core, reference, presets)[0]
    records = copy.deepcopy(runners["reference"].records)
    records[1]["paper"]["ics_l2"] = records[1]["paper"]["ics_l2"] * np.where(
        np.arange(len(records[1]["paper"]["ics_l2"])) == 2, 1.01, 1.0)
    runners["reference"].records = records
    passed, worst, _ = bench.check_agreement(core, reference, presets)
    assert not passed and worst > 1.0


def test_scan_loop_benchmark_counts_the_same_flops_and_agrees(bench, summary_and_output):
    """Accelerators run the scan loop: its FLOPs are counted on the host loop's programs, and
    its measurements must agree with the seed-style loop just as the host loop's do."""
    host_summary, _ = summary_and_output
    out = io.StringIO()
    summary = bench.run("test", steps=2, repeats=1, reference=True, out=out, step_loop="scan")
    assert "step loop scan" in out.getvalue()
    assert summary["agreement"] is True and summary["agreement_steps"] >= 2
    rows = {row["path"]: row for row in summary["table"]}
    host_rows = {row["path"]: row for row in host_summary["table"]}
    for name in ("plain", "measured (blog+paper)", "seed-style reference"):
        np.testing.assert_allclose(rows[name]["GFLOP/step"], host_rows[name]["GFLOP/step"],
                                   rtol=1e-9)
