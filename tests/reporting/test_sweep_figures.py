"""A learning-rate sweep's line figures: drawn at the sweep's first rate, never averaged over
runs of different rates, and the captions say which rate."""

from __future__ import annotations

import pandas as pd

from bnstudy.pipelines.reporting.nodes import at_first_rate
from bnstudy.reporting.captions import SWEPT_FIGURES, figure_captions


def _table(rates):
    rows = [{"model": "dln_candidate", "seed": seed, "step": step, "layer": "", "preset": "paper",
             "metric": "loss_range", "value": 1000.0 * rate, "learning_rate": rate}
            for rate in rates for seed in (0, 1) for step in (0, 10)]
    return pd.DataFrame(rows)


def test_a_sweep_table_is_drawn_at_its_first_rate_only():
    swept = _table([1e-6, 1e-7])
    drawn = at_first_rate(swept)
    assert set(drawn["learning_rate"]) == {1e-6} and len(drawn) == len(swept) // 2
    # a seed-mean over the drawn rows is the first rate's value, not the mean of both rates
    assert drawn.groupby("step")["value"].mean().tolist() == [1e-3, 1e-3]
    single = _table([0.035])
    assert at_first_rate(single).equals(single)
    assert at_first_rate(single.drop(columns="learning_rate")).shape == (4, 7)


def test_the_captions_of_a_sweep_name_the_rate_drawn():
    plain = figure_captions([0, 1])
    swept = figure_captions([0, 1], sweep_rate=1e-6)
    for name in SWEPT_FIGURES:
        assert "Learning-rate sweep: at lr 1e-06" in swept[name]
        assert "sweep" not in plain[name]
    assert swept["activation_histograms"] == plain["activation_histograms"]
