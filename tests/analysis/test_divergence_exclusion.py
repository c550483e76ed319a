"""A seed that diverged in either model is left out of every statistic, in both models, and
the summaries say so; with no seed left, nothing is compared and the Fidelity table says why."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bnstudy.analysis import fidelity
from bnstudy.analysis.divergence import (
    diverged_at,
    exclude_diverged,
    excluded_pairs,
    exclusion_note,
)
from bnstudy.pipelines.analysis import nodes
from tests.analysis.test_fidelity import _traces

SEEDS = [1, 2, 3, 4, 5]


def _mark(traces: dict, model: str, seed: int, step: int | None) -> dict:
    """The columns the training node adds; ``model``'s ``seed`` diverged at ``step`` (NaN from
    there on, as the core writes it)."""
    out = {}
    for kind, pair in traces.items():
        out[kind] = {}
        for name, given in pair.items():
            if not isinstance(given, pd.DataFrame):
                out[kind][name] = given
                continue
            frame = given.copy()
            hit = (name == model) & (frame["seed"] == seed) if step is not None else np.zeros(len(frame), bool)
            frame["diverged_at"] = np.where(hit, step if step is not None else -1, -1)
            frame["diverged"] = hit & (frame["step"] >= (step or 0))
            numeric = [c for c in frame.columns if frame[c].dtype.kind == "f"]
            frame.loc[frame["diverged"], numeric] = np.nan
            out[kind][name] = frame
    return out


PAIR = [{"reference": "baseline", "treatment": "candidate"}]
NODE_TRACES = {"training": "training_trace", "evals": "eval_trace", "smoothness": "smoothness_trace",
               "ics": "ics_trace", "histograms": "activation_histograms", "init": "init_distance"}


def _inputs(traces: dict, kinds=NODE_TRACES) -> dict:
    """The node's keyword inputs ``<trace>:<model>``, as the pipeline passes them."""
    return {f"{name}:{model}": value for kind, name in kinds.items()
            for model, value in traces[kind].items()}


def _node(traces: dict, comparisons=PAIR) -> dict:
    """compare_models' outputs, the headline comparison's summary under its old name."""
    roster = {model: {"normalization": "none" if model == "baseline" else "batch"}
              for model in {m for pair in comparisons for m in pair.values()}}
    out = nodes.compare_models({"smoothing_fraction": 0.01}, comparisons, roster, **_inputs(traces))
    study = out["model_comparisons_summary"]
    return {**out, "study": study,
            "model_comparisons_summary": study["comparisons"][study["headline"]]}


def test_a_diverged_seed_is_left_out_of_both_models_exactly():
    traces = _traces(SEEDS)
    summary = _node(_mark(traces, "baseline", 3, 50))["model_comparisons_summary"]
    # the same traces with seed 3 removed by hand, compared directly
    without = {kind: {model: (frame[frame["seed"] != 3] if isinstance(frame, pd.DataFrame)
                              else {k: v for k, v in frame.items() if k != "seed_3"})
                      for model, frame in pair.items()} for kind, pair in traces.items()}
    alone = fidelity.compare_models(without["training"], without["evals"], without["smoothness"],
                                    without["ics"], without["histograms"], without["init"],
                                    smoothing_fraction=0.01)

    assert summary["seeds"] == [1, 2, 4, 5]
    assert summary["excluded_seeds"] == {"3": "baseline diverged at step 50"}
    assert "seed 3: baseline diverged at step 50" in summary["note"]
    for name, measure in alone["measures"].items():
        got = summary["measures"][name]["overall"]
        assert got["n"] == measure["overall"]["n"] == 4, name
        np.testing.assert_allclose(got["estimate"], measure["overall"]["estimate"], rtol=1e-12, err_msg=name)
        assert got["text"] == measure["overall"]["text"], name


def test_averaging_the_diverged_seed_in_would_change_the_numbers():
    """The check above has teeth: with seed 3's pre-divergence values kept, the
    estimates differ (pandas would skip only its NaN rows)."""
    marked = _mark(_traces(SEEDS), "baseline", 3, 50)
    summary = _node(marked)["model_comparisons_summary"]
    unmarked = {kind: {model: frame.drop(columns=["diverged", "diverged_at"])
                       if isinstance(frame, pd.DataFrame) else frame for model, frame in pair.items()}
                for kind, pair in marked.items()}
    naive = _node(unmarked)["model_comparisons_summary"]
    assert naive["seeds"] == SEEDS
    landscape = "paper/loss_range"
    assert naive["measures"][landscape]["overall"]["n"] == 5
    assert naive["measures"][landscape]["overall"]["estimate"] != pytest.approx(
        summary["measures"][landscape]["overall"]["estimate"], rel=1e-6)


def test_with_every_seed_diverged_nothing_is_compared_and_the_table_says_why():
    out = _node(_merge_marks(_mark(_traces([1, 2]), "baseline", 1, 5), 2))
    summary = out["model_comparisons_summary"]
    assert summary["nothing_to_compare"] and summary["measures"] == {} and summary["seeds"] == []
    assert set(summary["excluded_seeds"]) == {"1", "2"}
    rows = out["fidelity_summary"]["rows"]
    assert len(rows) == 6 and all(r["agrees"] == "untested (every seed diverged)" for r in rows)
    assert all(r["this_run"].startswith("not measured: Left out") for r in rows)
    # every measure named, none a template (the report printed "{preset}/ics_l2")
    assert [r["measure"] for r in rows] == ["paper/ics_l2", "paper/loss_range", "paper/grad_diff_max",
                                            "paper/beta_smoothness", "activation/delta_mu", "init_distance"]


def _merge_marks(traces: dict, seed: int) -> dict:
    """Mark baseline ``seed`` as diverged at step 5 too, keeping earlier marks."""
    for pair in traces.values():
        frame = pair.get("baseline")
        if isinstance(frame, pd.DataFrame):
            hit = frame["seed"] == seed
            frame.loc[hit, "diverged_at"] = 5
            frame.loc[hit & (frame["step"] >= 5), "diverged"] = True
    return traces


def test_analysis_nodes_leave_the_seed_out_and_return_an_empty_table_when_none_is_left():
    traces = _mark(_traces(SEEDS), "candidate", 2, 10)
    table, summary = nodes.analyze_loss_landscape({"num_phases": 3}, PAIR, **_inputs(
        traces, {"smoothness": "smoothness_trace"}))
    summary = summary["comparisons"]["candidate_vs_baseline"]
    assert summary["excluded_seeds"] == {"2": "candidate diverged at step 10"}
    assert 2 not in set(table["seed"]) if "seed" in table.columns else True
    assert "diverged" not in table.columns
    one = _mark(_traces([7]), "candidate", 7, 10)
    table, summary = nodes.analyze_loss_landscape({"num_phases": 3}, PAIR, **_inputs(
        one, {"smoothness": "smoothness_trace"}))
    assert table.empty and summary["comparisons"]["candidate_vs_baseline"]["nothing_to_compare"]


def test_every_comparison_leaves_out_only_the_seeds_of_its_own_pair():
    """A third model of the roster, compared with the baseline: its diverged seed is left
    out of its own comparison only, and each table keeps every model once under its name."""
    traces = _traces(SEEDS)
    for kind, pair in traces.items():  # "extra": the candidate's traces under another name
        pair["extra"] = pair["candidate"]
    marked = _mark(traces, "extra", 3, 50)
    three = [*PAIR, {"reference": "baseline", "treatment": "extra"}]
    out = _node(marked, three)
    study = out["study"]
    assert study["headline"] == "candidate_vs_baseline"
    assert list(study["comparisons"]) == ["candidate_vs_baseline", "extra_vs_baseline"]
    assert study["comparisons"]["candidate_vs_baseline"]["seeds"] == SEEDS
    extra = study["comparisons"]["extra_vs_baseline"]
    assert extra["seeds"] == [1, 2, 4, 5] and extra["excluded_seeds"] == {"3": "extra diverged at step 50"}
    assert (extra["reference"], extra["treatment"]) == ("baseline", "extra")
    # the pair functions worded the treatment by its name
    assert any("extra" in m["overall"]["text"] for m in extra["measures"].values())
    table, summary = nodes.analyze_loss_landscape({"num_phases": 3}, three, **_inputs(
        marked, {"smoothness": "smoothness_trace"}))
    assert set(table["model"]) == {"baseline", "candidate", "extra"}
    assert not table.duplicated().any()
    assert set(table.loc[table["model"] == "extra", "seed"]) == {1, 2, 4, 5}
    assert set(table.loc[table["model"] == "baseline", "seed"]) == set(SEEDS)  # from its healthy pair
    assert set(summary["comparisons"]) == {"candidate_vs_baseline", "extra_vs_baseline"}


def test_helpers_read_the_seed_level_column():
    frame = pd.DataFrame({"seed": [1, 1, 2, 2], "step": [0, 9, 0, 9], "diverged_at": [-1, -1, 4, 4],
                          "diverged": [False, False, False, True]})
    assert diverged_at(frame) == {2: 4}
    assert excluded_pairs({"baseline": frame, "candidate": frame.assign(diverged_at=-1)}) == {
        2: "baseline diverged at step 4"}
    kept, excluded = exclude_diverged({"x": {"baseline": frame}})
    assert set(kept["x"]["baseline"]["seed"]) == {1} and excluded == {2: "baseline diverged at step 4"}
    assert exclusion_note({}) is None
    assert exclusion_note(excluded, [1, 2]).endswith("1 of 2 seeds remain.")
