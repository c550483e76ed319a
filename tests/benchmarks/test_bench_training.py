"""The benchmark runs end to end on the test-size config: every column, a sane table, the
seed-style reference agreeing with the engine in float64, and the study's defaults read
from the YAML.

The fast runs use chunks of 4 steps in the host loop: that is the Spec of
tests/core/test_against_reference.py's host runs, so one session compiles the one-layer
measurement programs (float32 and float64) once for both files.
"""

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
MEASURED = "measured (blog+paper)"


def _load(name: str):
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# The benchmark's end-to-end run compiles the engine and the seed-style reference (about two
# minutes on two cores): with the slow tests, which CI runs too.
SLOW = pytest.mark.slow


@pytest.fixture(scope="module")
def bench():
    return _load("bench_training")


@pytest.fixture(scope="module")
def summary_and_output(bench):
    out = io.StringIO()
    summary = bench.run("test", steps=4, repeats=1, reference=True, out=out, step_loop="host")
    return summary, out.getvalue()


@SLOW
def test_table_has_every_column_and_row(bench, summary_and_output):
    summary, out = summary_and_output
    header = next(line for line in out.splitlines() if "steps/s" in line)
    for column in bench.COLUMNS:
        assert column in header
    rows = {row["path"]: row for row in summary["table"]}
    assert set(rows) == {"plain", MEASURED, "seed-style reference"}
    for name in ("plain", MEASURED):
        row = rows[name]
        assert row["steps/s"] > 0 and row["compile s"] >= 0 and row["peak RSS MB"] > 10
        assert row["GFLOP/step"] > 0
        np.testing.assert_allclose(row["GFLOP/s"], row["GFLOP/step"] * row["steps/s"])
    assert "measurement efficiency" in out and "speed vs seed-style reference" in out
    assert "step loop host" in out and "Executor.run_chunk" in out


@SLOW
def test_measured_step_counts_the_measurement_arithmetic(summary_and_output):
    summary, _ = summary_and_output
    # Per measured step of the tiny net: 23 probe points and the ICS (a suffix pass per layer
    # in 2 modes) each cost about one forward+backward pass; the plain step one, plus the
    # eval-mode forward pass for the batch accuracy. So the FLOP ratio lies well above 15.
    assert 15 < summary["flop_ratio"] < 40
    np.testing.assert_allclose(summary["efficiency"],
                               summary["time_ratio"] / summary["flop_ratio"])


@SLOW
def test_seed_style_reference_agrees_in_float64(summary_and_output):
    summary, out = summary_and_output
    assert summary["agreement"] is True and summary["agreement_steps"] >= 2
    assert summary["agreement_worst"] <= 1.0
    line = next(line for line in out.splitlines() if line.startswith("agreement check"))
    assert "float64" in line and "rtol 1e-06" in line and "PASS" in line
    core, reference = summary["agreement_runs"]
    assert core.first_outputs["train_loss"].dtype == np.float64
    # The float32 timed runs are compared too, for information only.
    assert np.isfinite(summary["float32_worst"]) and "for information" in out


@SLOW
def test_agreement_check_catches_a_wrong_measurement(bench, summary_and_output):
    """On the float64 runs the check fails when one ICS value is off by 1%, and when one
    ICS cosine is off by 0.0023 (float32 rounding reached that on conv_1 at 1/8 width)."""
    core, reference = summary_and_output[0]["agreement_runs"]
    presets = list(bench.PRESET_LIST)
    assert bench.check_agreement(core, reference, presets)[0]
    original = reference.records
    try:
        for preset, key, change in (("paper", "ics_l2", lambda v: v * 1.01),
                                    ("blog", "ics_cosine", lambda v: v + 0.0023)):
            records = copy.deepcopy(original)
            values = records[1][preset][key]
            records[1][preset][key] = np.where(np.arange(len(values)) == 1, change(values),
                                               values)
            reference.records = records
            passed, worst, _ = bench.check_agreement(core, reference, presets)
            assert not passed and worst > 1.0, (preset, key)
    finally:
        reference.records = original


def test_configs_come_from_the_study_yaml(bench):
    """cpu and paper are conf/cpu and conf/base: nothing restated in the benchmark."""
    import yaml

    conf = BENCHMARKS.parent / "conf"
    from bnstudy.parameters import with_code_defaults

    # conf/base states what the study changes; the rest is the configs' code defaults
    base = with_code_defaults(yaml.safe_load((conf / "base" / "globals.yml").read_text()))
    cpu = yaml.safe_load((conf / "cpu" / "globals.yml").read_text())
    paper_model, paper_train, _ = bench.CONFIGS["paper"]
    cpu_model, cpu_train, _ = bench.CONFIGS["cpu"]
    assert list(paper_model.conv_features) == list(base["architecture"]["conv_features"])
    assert paper_train.batch_size == base["training"]["batch_size"]
    assert cpu_model.width_multiplier == cpu["architecture"]["width_multiplier"]
    assert cpu_model.conv_features == paper_model.conv_features
    assert cpu_train.epochs == cpu["training"]["epochs"]
    assert paper_train.matmul_precision == base["training"]["matmul_precision"]


@pytest.mark.slow
def test_scan_loop_benchmark_counts_the_same_flops_and_agrees(bench, summary_and_output):
    """Accelerators run the scan loop: its FLOPs are counted on the host loop's programs, and
    its measurements must agree with the seed-style loop just as the host loop's do."""
    host_summary, _ = summary_and_output
    out = io.StringIO()
    summary = bench.run("test", steps=4, repeats=1, reference=True, out=out, step_loop="scan")
    assert "step loop scan" in out.getvalue()
    assert summary["agreement"] is True and summary["agreement_steps"] >= 2
    rows = {row["path"]: row for row in summary["table"]}
    host_rows = {row["path"]: row for row in host_summary["table"]}
    for name in ("plain", MEASURED, "seed-style reference"):
        np.testing.assert_allclose(rows[name]["GFLOP/step"], host_rows[name]["GFLOP/step"],
                                   rtol=1e-9)
