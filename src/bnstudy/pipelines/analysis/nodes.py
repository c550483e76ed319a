"""Thin Kedro adapters around :mod:`bnstudy.analysis.tables` and :mod:`bnstudy.analysis.study`.

Each node takes every model's results of its study as keyword inputs ``results:<model>``
(``<model>.results``, a :class:`~bnstudy.datasets.ModelResults` that loads each trace when a
node first reads it) and the study's ``comparisons``; it runs the
measurement once per comparison and returns a tidy table of every model (under its roster
name) and a JSON-ready summary per comparison. A seed that diverged in either model of a pair
is left out of that pair (:mod:`bnstudy.analysis.divergence`), and the summary says so under
``excluded_seeds``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from bnstudy.analysis import fidelity, study
from bnstudy.analysis import tables as analysis
from bnstudy.analysis.divergence import exclude_diverged, exclusion_note, healthy_histograms
from bnstudy.pipelines import json_ready

Result = tuple[pd.DataFrame, dict[str, Any]]
SEPARATOR = ":"
"""Between a kind and a name in a node's keyword inputs (``results:baseline``, ``figure:...``)."""
RESULTS = "results"
"""The kind of a model's results in a node's keyword inputs (``results:<model>``)."""


class ByModel(Mapping[str, Any]):
    """``{model: its output member}`` over the models' results, each loaded on first access."""

    def __init__(self, results: Mapping[str, Mapping[str, Any]], member: str) -> None:
        self._results = {model: found for model, found in results.items() if member in found}
        self._member = member

    def __getitem__(self, model: str) -> Any:
        return self._results[model][self._member]

    def __iter__(self):
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)


def traces_by_kind(inputs: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """``{"<kind>:<name>": value}`` -> ``{kind: {name: value}}``, in input order; each model's
    results (``results:<model>``) become one entry per output, ``{trace: {model: trace}}``
    (:class:`ByModel`: a trace loads when it is first read)."""
    grouped: dict[str, Mapping[str, Any]] = {}
    results: dict[str, Mapping[str, Any]] = {}
    for key, value in inputs.items():
        kind, _, name = key.partition(SEPARATOR)
        if kind == RESULTS:
            results[name] = value
        else:
            grouped.setdefault(kind, {})[name] = value
    for member in dict.fromkeys(member for found in results.values() for member in found):
        grouped.setdefault(member, ByModel(results, member))
    return grouped


def _analyzed(compute: Callable[..., Result], reference: str, treatment: str,
              *pairs: dict[str, Any]) -> Result:
    """``compute(*pairs)`` on the pair's traces without diverged seeds (``pairs``:
    ``{model: trace}``, handed to ``compute`` by role), the exclusions noted; with no seed
    left, an empty table and a summary that says why."""
    frames = {index: pair for index, pair in enumerate(pairs) if _is_trace(pair)}
    kept, excluded = exclude_diverged(frames)
    pairs = tuple(kept.get(index, _histograms(pair, excluded)) for index, pair in enumerate(pairs))
    note = exclusion_note(excluded)
    if excluded and all(frame.empty for pair in kept.values() for frame in pair.values()):
        return pd.DataFrame(), {"excluded_seeds": excluded, "note": note, "nothing_to_compare": True}
    table, summary = compute(*(study.as_roles(pair, reference, treatment) for pair in pairs))
    if excluded:
        summary = {**summary, "excluded_seeds": excluded, "note": note}
    return table, summary


def _is_trace(pair: dict[str, Any]) -> bool:
    return all(isinstance(value, pd.DataFrame) for value in pair.values())


def _histograms(pair: dict[str, Any], excluded: dict[int, str]) -> dict[str, Any]:
    return {model: healthy_histograms(value, excluded) for model, value in pair.items()}


def _each_comparison(compute: Callable[..., Result], comparisons: list, traces: Mapping[str, Any],
                     *kinds: str) -> Result:
    """``compute`` on each comparison's pair of the traces ``kinds`` (diverged seeds left out)."""
    grouped = traces_by_kind(traces)
    table, summary = study.per_comparison(lambda *pair: _analyzed(compute, *pair), comparisons,
                                          *(grouped[kind] for kind in kinds))
    return table, json_ready(summary)


def analyze_training_curves(params: dict[str, Any], comparisons: list, **traces: pd.DataFrame) -> Result:
    return _each_comparison(
        lambda training, evals: analysis.analyze_training_curves(
            training, evals, params["num_phases"], params["smoothing_fraction"]),
        comparisons, traces, "training_trace", "eval_trace")


def analyze_gradient_ics(params: dict[str, Any], comparisons: list, **traces: pd.DataFrame) -> Result:
    return _each_comparison(lambda ics: analysis.analyze_gradient_ics(ics, params["num_phases"]),
                            comparisons, traces, "ics_trace")


def analyze_loss_landscape(params: dict[str, Any], comparisons: list, **traces: pd.DataFrame) -> Result:
    return _each_comparison(lambda smooth: analysis.analyze_loss_landscape(smooth, params["num_phases"]),
                            comparisons, traces, "smoothness_trace")


def analyze_gradient_predictiveness(params: dict[str, Any], comparisons: list,
                                    **traces: pd.DataFrame) -> Result:
    return _each_comparison(
        lambda smooth: analysis.analyze_gradient_predictiveness(smooth, params["num_phases"]),
        comparisons, traces, "smoothness_trace")


def analyze_beta_smoothness(params: dict[str, Any], comparisons: list, **traces: pd.DataFrame) -> Result:
    return _each_comparison(lambda smooth: analysis.analyze_beta_smoothness(smooth, params["num_phases"]),
                            comparisons, traces, "smoothness_trace")


def analyze_activation_shift(params: dict[str, Any], comparisons: list, **traces: Any) -> Result:
    return _each_comparison(
        lambda stats, histograms: analysis.analyze_activation_shift(stats, histograms, params["num_phases"]),
        comparisons, traces, "activation_stats", "activation_histograms")


def analyze_init_distance(params: dict[str, Any], comparisons: list, **traces: pd.DataFrame) -> Result:
    del params  # the distance from initialization has no phases or smoothing
    return _each_comparison(analysis.analyze_init_distance, comparisons, traces, "init_distance")


def gradient_difference(**traces: pd.DataFrame) -> pd.DataFrame:
    """The paper's Fig 11 data for every model of the study (read from ``results:<model>``
    inputs): :func:`bnstudy.analysis.tables.gradient_difference_curves`. A diverged run's
    probe rows are NaN from its divergence on, so they drop out."""
    return analysis.gradient_difference_curves(traces_by_kind(traces)["probe_trace"])


COMPARED = {"training": "training_trace", "evals": "eval_trace", "smoothness": "smoothness_trace",
            "ics": "ics_trace", "init": "init_distance"}
"""The traces :func:`compare_models` reads per model (with ``activation_histograms``), by kind."""


def compare_models(params: dict[str, Any], comparisons: list, roster: dict[str, Any],
                   **traces: Any) -> dict[str, Any]:
    """Every comparison of the study, measure by measure across seeds (seeds that diverged in
    either model of a pair left out, and named), the Fidelity table of its headline
    comparison (the first declared: the paper's claims are about that pair) and the claims
    read in each comparison of BN against no normalization (``roster``: the ``models``
    parameter) and each protocol (:func:`bnstudy.analysis.fidelity.fidelity_readings`)."""
    grouped = traces_by_kind(traces)
    by_kind = {kind: grouped[name] for kind, name in COMPARED.items()}
    summary = study.compare_study(comparisons, by_kind, grouped["activation_histograms"],
                                  params["smoothing_fraction"])
    rows = fidelity.fidelity_table(study.headline(summary))
    return {"model_comparisons_summary": json_ready(summary),
            "fidelity_summary": json_ready({"comparison": summary["headline"], "rows": rows,
                                            "readings": fidelity.fidelity_readings(
                                                summary, {m: e["normalization"] for m, e in roster.items()})})}
