"""Thin Kedro adapters around :mod:`bnstudy.analysis.beyond` and the beyond report.

Node inputs come model by model in the order of :data:`MODELS` (kedro-viz shows where each
comes from); these functions only regroup them by model and call the library.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bnstudy.analysis import beyond, study
from bnstudy.analysis.tables import BASELINE, CANDIDATE, moving_average
from bnstudy.pipelines import json_ready
from bnstudy.reporting import beyond_figures, document
from bnstudy.reporting.beyond_report import BEYOND_FIGURES, build_beyond_report
from bnstudy.reporting.plotting import note_figure, to_png

MODELS = (BASELINE, CANDIDATE, *beyond.VARIANTS)
COMPARED_TRACES = ("training_trace", "eval_trace", "smoothness_trace", "ics_trace",
                   "init_distance", "activation_histograms")
"""The per-model inputs of :func:`compare_variants`, in this order for each model."""


def _by_model(values: tuple, per_model: int) -> dict[str, tuple]:
    return {model: values[i * per_model:(i + 1) * per_model] for i, model in enumerate(MODELS)}


def check_models(*records: dict[str, Any]) -> list[str]:
    """The models' names once their run records show one setup (ValueError otherwise)."""
    return beyond.check_same_setup(dict(zip(MODELS, records, strict=True)))


def compare_variants(models: list[str], study_comparisons: dict[str, Any],
                     params: dict[str, Any], comparisons: list, *traces: Any) -> dict[str, Any]:
    """The roster's comparisons of beyond_study (each variant against no BN and against BN,
    by the study's own analysis), the noise question and the Lp table.

    ``models``: :func:`check_models`'s output (it runs first); ``study_comparisons``: the
    study's ``model_comparisons_summary``; ``traces``: for each model of :data:`MODELS`,
    its :data:`COMPARED_TRACES`.
    """
    del models  # only orders this node after the check
    grouped = _by_model(traces, len(COMPARED_TRACES))
    kinds = {kind: {model: grouped[model][i] for model in MODELS}
             for i, kind in enumerate(study.KINDS)}
    histograms = {model: grouped[model][5] for model in MODELS}
    compared = study.compare_study(comparisons, kinds, histograms,
                                   params["smoothing_fraction"])["comparisons"]
    vs_baseline = {v: compared[study.comparison_key(BASELINE, v)] for v in beyond.VARIANTS}
    vs_bn = {v: compared[study.comparison_key(CANDIDATE, v)] for v in beyond.VARIANTS}
    noise = beyond.noise_question(study.headline(study_comparisons), vs_baseline["candidate_noisy"],
                                  vs_bn["candidate_noisy"])
    lp = beyond.lp_rows({v: vs_baseline[v] for v in ("candidate_l1", "candidate_l2",
                                                     "candidate_linf")},
                        study.headline(study_comparisons), "paper")
    return json_ready({"vs_baseline": vs_baseline, "vs_bn": vs_bn, "noise": noise, "lp": lp})


def noisy_shift(baseline: dict[str, Any], candidate: dict[str, Any],
                noisy: dict[str, Any]) -> pd.DataFrame:
    """The activation-shift table of no BN, BN and noisy BN (the paper's plot)."""
    return beyond.shift_table({BASELINE: baseline, CANDIDATE: candidate, "candidate_noisy": noisy})


def normalization_curves(params: dict[str, Any], *traces: pd.DataFrame) -> pd.DataFrame:
    """``model, seed, step, metric, value``: each seed's moving-average training loss and its
    test accuracy, for every model (``traces``: training_trace, eval_trace per model)."""
    rows = []
    for model, (training, evals) in _by_model(traces, 2).items():
        steps = int(training["step"].max()) + 1 if not training.empty else 1
        window = max(1, int(round(params["smoothing_fraction"] * steps)))
        for seed, part in training.groupby("seed"):
            smoothed = moving_average(part["train_loss"].to_numpy(dtype=float), window)
            rows.append(pd.DataFrame({"model": model, "seed": seed, "step": part["step"].to_numpy(),
                                      "metric": "train_loss", "value": smoothed}))
        rows.append(pd.DataFrame({"model": model, "seed": evals["seed"].to_numpy(),
                                  "step": evals["step"].to_numpy(), "metric": "test_accuracy",
                                  "value": evals["test_accuracy"].to_numpy(dtype=float)}))
    return pd.concat(rows, ignore_index=True)


def analyze_curvature(record: dict[str, Any], params: dict[str, Any],
                      *curvature: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every model's curvature trace against the thresholds of the run's lr and momentum."""
    train = record["train_config"]
    table, summary = beyond.curvature_analysis(
        dict(zip(MODELS, curvature, strict=True)), float(train["learning_rate"]),
        float(train["momentum"]), float(params["near_threshold"]))
    return table, json_ready(summary)


def plot_curvature(table: pd.DataFrame, summary: dict[str, Any]) -> bytes:
    if table.empty:
        return to_png(note_figure("Curvature", summary.get("statement", "not measured")))
    return to_png(beyond_figures.curvature_figure(table, summary["thresholds"]))


def plot_noisy_shift(table: pd.DataFrame, params: dict[str, Any]) -> bytes:
    return to_png(beyond_figures.noisy_shift_figure(table, params["ics_layers"]))


def plot_normalizations(table: pd.DataFrame) -> bytes:
    return to_png(beyond_figures.normalizations_figure(table))


def write_beyond_report(comparisons: dict[str, Any], curvature: dict[str, Any],
                        provenance: dict[str, Any], preprocessing: dict[str, Any],
                        params: dict[str, Any], *records_and_figures: Any
                        ) -> tuple[dict[str, Any], str, dict[str, dict[str, float]]]:
    """The report (Markdown with its figures, and HTML) and its headline metrics for MLflow.
    ``records_and_figures``: the run record of each model of :data:`MODELS`, then the
    figures of :data:`BEYOND_FIGURES`."""
    records = dict(zip(MODELS, records_and_figures[:len(MODELS)], strict=True))
    figures = dict(zip(BEYOND_FIGURES, records_and_figures[len(MODELS):], strict=True))
    built = build_beyond_report(comparisons, curvature, records, provenance, preprocessing, params)
    markdown = {"text": document.render_markdown(built, figures),
                "files": document.figure_files(figures)}
    return markdown, document.render_html(built, figures), beyond_metrics(comparisons, curvature)


def beyond_metrics(comparisons: dict[str, Any], curvature: dict[str, Any]
                   ) -> dict[str, dict[str, float]]:
    """``<variant>/test_accuracy_vs_baseline`` (difference) and ``<model>/<curvature>_late``."""
    metrics = {}
    for variant, summary in comparisons["vs_baseline"].items():
        view = summary.get("measures", {}).get("test_accuracy", {}).get("overall")
        if view is not None and np.isfinite(view["estimate"]):
            metrics[f"{variant}/test_accuracy_vs_baseline"] = float(view["estimate"])
    for model, entries in curvature.get("models", {}).items():
        for metric, entry in entries.items():
            if entry["late_mean"] is not None and np.isfinite(entry["late_mean"]):
                metrics[f"{model}/{metric}_late"] = float(entry["late_mean"])
    return {key: {"value": value, "step": 0} for key, value in metrics.items()}
