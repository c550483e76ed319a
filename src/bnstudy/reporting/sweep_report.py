"""The learning-rate sweep's part of ``lr_sweep_study``'s report: its conclusion per pair (from
:func:`bnstudy.analysis.sweep.analyze_sweep`), a table per pair of every learning rate, and
its three figures with their captions. Pure Python (no Kedro)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bnstudy.analysis import statistics as st
from bnstudy.analysis.study import model_word
from bnstudy.reporting.document import ReportPart, Section, Table
from bnstudy.runs import learning_rate_key

STABLE = ("A run (model, learning rate, seed) is stable when it never diverged (every loss, "
          "gradient and update finite) and its final training loss (the mean over the last "
          "{final:.0%} of its steps) is below its first (the mean over the first {final:.0%}) and "
          "below chance level (0.99 ln 10, the edge of the stall band): it trained, not merely "
          "stayed finite; a run that spiked early and settled at chance did not. A model's largest stable learning rate is the "
          "largest of its grid at which every seed's run is stable; in brackets, the geometric "
          "mean of each seed's own largest stable rate with its 95% t-interval (in log space).")


def _interval(entry: Mapping[str, Any] | None, digits=st.three_digits) -> str:
    if not entry or entry.get("mean") is None:
        return "n/a"
    low, high = entry.get("low"), entry.get("high")
    interval = f" [{digits(low)}, {digits(high)}]" if low is not None and high is not None else ""
    return f"{digits(entry['mean'])}{interval}"


def _ratio(entry: Mapping[str, Any]) -> str:
    if entry.get("estimate") is None:
        return f"n/a ({entry['n']} seeds healthy in both)"
    mark = " (significant)" if entry.get("significant") else ""
    return (f"{st.three_digits(entry['estimate'])} [{st.three_digits(entry['low'])}, "
            f"{st.three_digits(entry['high'])}]{mark}")


def pair_table(pair: Mapping[str, Any], per_rate: Mapping[str, Mapping[str, Any]]) -> Table:
    """learning rate | each model's final training loss and test accuracy [CI] and diverged
    seeds | the final training loss, treatment / reference, paired over seeds."""
    ref, treat = pair["reference"], pair["treatment"]
    words = model_word(ref), model_word(treat)
    columns = ["lr", *(f"{w}: final training loss" for w in words),
               *(f"{w}: final test accuracy" for w in words), "diverged seeds (of each)",
               f"final training loss, {words[1]} / {words[0]}"]
    rows = []
    for rate, entry in pair["rates"].items():
        a, b = per_rate[ref][rate], per_rate[treat][rate]
        rows.append([f"{float(rate):g}", _interval(a["final_train_loss"]), _interval(b["final_train_loss"]),
                     _interval(a["final_test_accuracy"]), _interval(b["final_test_accuracy"]),
                     f"{a['diverged']} / {len(a['seeds'])}, {b['diverged']} / {len(b['seeds'])}",
                     _ratio(entry)])
    return Table(columns, rows)


SWEEP_FIGURES = ("sweep", "sweep_curves", "sweep_ics")
"""The figures of the sweep's section, by name."""


def sweep_captions(curve_rates: Sequence[float], ics_rates: Sequence[float], preset: str) -> dict[str, str]:
    """The captions of :data:`SWEEP_FIGURES`."""
    def rates(values: Sequence[float]) -> str:
        return " and ".join(f"{rate:g}" for rate in values)
    return {
        "sweep": ("Each model's final training loss (log) and final test accuracy against the learning "
                  "rate (log axis): the mean across the seeds that did not diverge, with 95% t-interval "
                  "error bars; and how many of its seeds diverged at each rate (Santurkar et al., "
                  "Fig 1; Bjorck et al. 2018)."),
        "sweep_curves": (f"The paper's Fig 1: training loss of each step's batch (log) and test accuracy "
                         f"at lr {rates(curve_rates)}, the headline pair; lines: the mean across seeds, "
                         "bands: its 95% t-interval."),
        "sweep_ics": (f"The paper's Fig 3: gradient ICS (L2, log) at lr {rates(ics_rates)} in the report's "
                      f"layers, {preset} protocol, at the sweep's measured steps; lines: the mean across "
                      "seeds, bands: its 95% t-interval."),
    }


def sweep_part(summary: Mapping[str, Any], figures: Mapping[str, bytes], *, final_fraction: float,
               captions: Mapping[str, str]) -> ReportPart:
    """The sweep's section: the conclusion of each pair (its ``statement``), how stability is
    read, a table per pair, the figures; each model's largest stable learning rate and each
    pair's ratio as MLflow metrics."""
    paragraphs = [pair["statement"] for pair in summary["comparisons"].values()]
    paragraphs.append(STABLE.format(final=final_fraction))
    tables = [(f"{model_word(pair['treatment'])} against {model_word(pair['reference'])}",
               pair_table(pair, summary["per_rate"])) for pair in summary["comparisons"].values()]
    metrics: dict[str, float] = {}
    for model, entry in summary["largest_stable"].items():
        if entry["rate"] is not None:
            metrics[f"{model}/largest_stable_lr"] = float(entry["rate"])
    for key, pair in summary["comparisons"].items():
        a = summary["largest_stable"][pair["reference"]]["rate"]
        b = summary["largest_stable"][pair["treatment"]]["rate"]
        if a is not None and b is not None:
            metrics[f"{key}/largest_stable_lr_ratio"] = float(b) / float(a)
        for rate, entry in pair["rates"].items():
            if entry.get("estimate") is not None:
                metrics[f"{key}/{learning_rate_key(float(rate))}/final_train_loss_ratio"] = float(entry["estimate"])
    section = Section("The learning-rate sweep (the paper's Figs 1 and 3)", paragraphs=paragraphs,
                      tables=tables, figures=list(SWEEP_FIGURES))
    return ReportPart([section], figures=dict(figures), captions=dict(captions), metrics=metrics)
