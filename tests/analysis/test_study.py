"""The study's analysis over a learning-rate sweep: each comparison is made at each rate,
paired by seed at that rate, exactly as a study of that rate alone would make it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bnstudy.analysis import study
from bnstudy.runs import learning_rate_key
from tests.analysis.test_fidelity import _traces

SEEDS = [1, 2, 3]
PAIR = [{"reference": "baseline", "treatment": "candidate"}]
KINDS = ("training", "evals", "smoothness", "ics", "init")


def _sweep(rates: dict[float, float]) -> dict:
    """One study per rate (``_traces`` with the candidate's ratio ``rates[rate]``), stacked
    as a sweep writes them: a ``learning_rate`` column, histograms ``{seed_<k>: {lr_<x>: ...}}``."""
    alone = {rate: _traces(SEEDS, ratio=ratio) for rate, ratio in rates.items()}
    stacked = {kind: {model: pd.concat([alone[r][kind][model].assign(learning_rate=r) for r in rates],
                                       ignore_index=True)
                      for model in ("baseline", "candidate")} for kind in KINDS}
    stacked["histograms"] = {model: {f"seed_{s}": {learning_rate_key(r): alone[r]["histograms"][model][f"seed_{s}"]
                                                   for r in rates} for s in SEEDS}
                             for model in ("baseline", "candidate")}
    return {"alone": alone, "stacked": stacked}


def test_a_sweep_is_compared_at_each_learning_rate_as_that_rate_alone():
    runs = _sweep({0.01: 0.4, 0.1: 2.5})
    stacked = runs["stacked"]
    summary = study.compare_study(PAIR, {k: stacked[k] for k in KINDS}, stacked["histograms"], 0.01)
    assert list(summary["comparisons"]) == ["candidate_vs_baseline@lr=0.01", "candidate_vs_baseline@lr=0.1"]
    assert summary["headline"] == "candidate_vs_baseline@lr=0.01"
    for rate in (0.01, 0.1):
        alone = runs["alone"][rate]
        expected = study.compare_study(PAIR, {k: alone[k] for k in KINDS}, alone["histograms"], 0.01)
        got = summary["comparisons"][f"candidate_vs_baseline@lr={rate!r}"]
        assert got["learning_rate"] == rate and got["seeds"] == SEEDS
        for name, measure in study.headline(expected)["measures"].items():
            np.testing.assert_allclose(got["measures"][name]["overall"]["estimate"],
                                       measure["overall"]["estimate"], rtol=1e-12, err_msg=name)
    # the two rates differ (a wrong split would pool or repeat one of them)
    low, high = (summary["comparisons"][f"candidate_vs_baseline@lr={r!r}"]["measures"]["paper/loss_range"]
                 ["overall"]["estimate"] for r in (0.01, 0.1))
    assert low < 1 < high


def test_a_sweeps_tables_carry_the_learning_rate():
    stacked = _sweep({0.01: 0.4, 0.1: 2.5})["stacked"]

    def compute(reference, treatment, smoothness):
        frame = pd.concat([f.assign(model=role) for role, f in
                           study.as_roles(smoothness, reference, treatment).items()], ignore_index=True)
        return frame[["model", "seed", "step"]], {"rows": len(frame)}

    table, summary = study.per_comparison(compute, PAIR, stacked["smoothness"])
    assert sorted(table["learning_rate"].unique()) == [0.01, 0.1]
    assert set(summary["comparisons"]) == {"candidate_vs_baseline@lr=0.01", "candidate_vs_baseline@lr=0.1"}
    rows = len(stacked["smoothness"]["baseline"])  # both rates, per model
    assert all(s["rows"] == rows for s in summary["comparisons"].values())  # one rate, both models
    with pytest.raises(KeyError):
        study.at_learning_rate(stacked["histograms"], 0.5)["baseline"]["seed_1"]["steps"]


def test_two_models_each_at_a_rate_of_their_own_are_not_a_sweep():
    """A roster override (or a baseline trained at lr 1000 to diverge) gives each model one
    rate of its own: the pair is compared as a whole, as a study without the column."""
    alone = _traces(SEEDS)
    marked = {kind: {"baseline": alone[kind]["baseline"].assign(learning_rate=1000.0),
                     "candidate": alone[kind]["candidate"].assign(learning_rate=0.035)} for kind in KINDS}
    assert study.sweep_rates("baseline", "candidate", *marked.values()) == []
    summary = study.compare_study(PAIR, marked, alone["histograms"], 0.01)
    plain = study.compare_study(PAIR, {k: alone[k] for k in KINDS}, alone["histograms"], 0.01)
    assert list(summary["comparisons"]) == ["candidate_vs_baseline"]
    got, expected = study.headline(summary)["measures"], study.headline(plain)["measures"]
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name]["overall"]["estimate"] == pytest.approx(expected[name]["overall"]["estimate"], rel=1e-12)


def test_a_swept_model_against_a_single_run_is_compared_at_each_of_its_rates():
    runs = _sweep({0.01: 0.4, 0.1: 2.5})["stacked"]
    single = {kind: {**frames, "baseline": frames["baseline"][frames["baseline"]["learning_rate"] == 0.01]
                     .assign(learning_rate=0.02)} for kind, frames in ((k, runs[k]) for k in KINDS)}
    assert study.sweep_rates("baseline", "candidate", *single.values()) == [0.01, 0.1]
    histograms = {**runs["histograms"], "baseline": {s: v[learning_rate_key(0.01)]
                                                     for s, v in runs["histograms"]["baseline"].items()}}
    summary = study.compare_study(PAIR, single, histograms, 0.01)
    assert list(summary["comparisons"]) == ["candidate_vs_baseline@lr=0.01", "candidate_vs_baseline@lr=0.1"]
    assert all(s["seeds"] == SEEDS for s in summary["comparisons"].values())
