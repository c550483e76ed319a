"""The curvature benchmark runs end to end on the test-size config and reports its costs
relative to a measured step."""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

from tests.benchmarks.test_bench_training import _load  # noqa: E402


@pytest.mark.slow  # compiles the measured step and the curvature programs
def test_curvature_benchmark_prints_costs_as_multiples_of_a_measured_step(capsys):
    bench = _load("bench_curvature")
    summary = bench.run("test", repeats=1, probe_size=64)
    printed = capsys.readouterr().out
    assert "one HVP on the probe set" in printed and "measured steps" in printed
    assert summary["iterations"] >= 2
    for key in ("measured_s", "hvp_s", "sharpness_s", "curvature_s"):
        assert summary[key] > 0
    # a whole measurement is at least its power iterations' and trace samples' HVPs
    assert f"{summary['trace_samples']} trace samples" in printed
    assert summary["curvature_s"] >= 0.5 * (summary["iterations"] + summary["trace_samples"]) \
        * summary["hvp_s"]
    assert summary["curvature_over_measured"] == pytest.approx(
        summary["curvature_s"] / summary["measured_s"])
