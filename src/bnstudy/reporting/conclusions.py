"""The report's conclusions, worded from the seed-aware comparisons.

Every sentence here comes from ``model_comparisons_summary`` (per-seed statistics paired
across seeds, a 95% t interval and a paired t-test, :mod:`bnstudy.analysis.comparisons`) or
``fidelity_summary``; nothing is decided from a single run's medians, and no claim is
answered with a bare yes or no: each carries its interval and test, or says it could not be
tested.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bnstudy.analysis import statistics as st
from bnstudy.analysis.fidelity import optimizer_label
from bnstudy.reporting.document import Table
from bnstudy.reporting.plotting import MODEL_NAMES
from bnstudy.runs import learning_rate_key

VIEWS = (
    ("overall", "all compared steps (per seed: the median)"),
    ("matched_loss", "at matched training loss (geometric mean over common loss levels)"),
    ("normalized", "divided by the step's gradient norm ||g_t||"),
)
PHASES = ("early", "middle", "late")
FIDELITY_COLUMNS = ["claim", "paper", "blog", "protocol", "this run (value, CI, significant?)",
                    "p: raw / Holm (6 claims)", "smallest detectable", "agrees?"]


def seed_list(seeds: Sequence[int]) -> str:
    return ", ".join(str(s) for s in seeds)


def seed_caveats(seeds: Sequence[int], summary: Mapping[str, Any] | None = None) -> list[str]:
    """The notes the report opens with: always how many seeds; plainly when that leaves the
    comparisons untestable (one seed) or weak (two); and which measurements kept fewer than
    two seeds after the stalled steps were excluded."""
    n = len(seeds)
    if (summary or {}).get("nothing_to_compare"):
        return [f"**Caveat: nothing to compare.** {summary['note']} No statistic, conclusion or figure of this "
                "report compares the two models; lower the learning rate or check the data and run again."]
    if n < 2:
        return [f"**Caveat: one seed** ({seed_list(seeds) or 'none'}): no interval, not testable. Every comparison "
                "below is a single paired value; none of them can say whether BatchNorm helps. Train several "
                "seeds (training.seeds, e.g. [1337, 1, 2, 3, 4]) for intervals and tests."]
    notes = [f"**{n} seeds** ({seed_list(seeds)}). Each comparison takes one statistic per seed and model, pairs the "
             "models by seed, and gives the geometric-mean ratio BN / no BN (or the mean difference) with its "
             "95% t interval and a paired t-test; 'significant' means p < 0.05."]
    if n == 2:
        notes.append("**Caveat: two seeds only.** The t intervals have one degree of freedom and are very wide.")
    if (summary or {}).get("note"):
        notes.append(f"**Caveat: divergence.** {summary['note']}")
    short = [name for name, m in (summary or {}).get("measures", {}).items() if m["overall"]["n"] < 2]
    if short:
        notes.append(f"**Caveat: {len(short)} measurement(s) kept fewer than two seeds** once diverged seeds and stalled steps "
                     f"were excluded ({', '.join(short)}): their overall comparison is not testable.")
    return notes


def agreement(row: Mapping[str, Any], num_seeds: int | None = None) -> str:
    """The Fidelity table's verdict with what it rests on (never a bare yes or no).

    ``num_seeds``: how many seeds the run trained, to say when stalled steps left fewer."""
    n = int(row.get("n_seeds") or 0)
    if "diverged" in str(row.get("agrees")):
        return str(row["agrees"])
    if n < 2:
        left = (f"{n} of {num_seeds} seeds left once diverged seeds and stalled steps were excluded" if num_seeds and num_seeds > n
                else "no seed measured both models" if n == 0 else "one seed")
        return f"untested: {left}, no interval"
    verdict = str(row["agrees"])
    if verdict == "not significant":
        return f"undecided: no significant difference across {n} seeds"
    basis = "significant" if row.get("significant") else "no significant difference"
    if row.get("significant") and row.get("significant_holm") is False:
        basis = "significant only before Holm's adjustment"
    return f"{verdict} ({basis}, {n} seeds)"


def p_values(row: Mapping[str, Any]) -> str:
    """``raw / Holm``: the claim's paired-test p and its p adjusted over the table's claims."""
    raw, holm = row.get("p_value"), row.get("p_holm")
    if raw is None or holm is None or not (np.isfinite(raw) and np.isfinite(holm)):
        return "untested"
    return f"{_p(raw)} / {_p(holm)}"


def _p(value: float) -> str:
    return "< 0.001" if value < 0.001 else st.three_digits(value)


def detectable(row: Mapping[str, Any]) -> str:
    """The smallest effect these seeds detect with power 0.8 (a ratio r: r or 1/r)."""
    value = row.get("detectable")
    if value is None or not np.isfinite(value):
        return "n/a (one seed)"
    if row.get("kind") == "ratio":
        return f"ratio {st.three_digits(value)} or {st.three_digits(1 / value)}"
    return f"difference ±{st.three_digits(value)}"


def run_optimizer(records: Mapping[str, Mapping[str, Any]]) -> str:
    """The optimizer the models trained with, from their run records' ``train_config``
    (:func:`bnstudy.analysis.fidelity.optimizer_label`); each model's when they differ."""
    labels = {model: optimizer_label(record["train_config"]["learning_rate"], record["train_config"]["momentum"],
                                     record["train_config"]["nesterov"],
                                     full_batch=record.get("num_train") == record["train_config"]["batch_size"])
              for model, record in records.items()}
    if len(set(labels.values())) == 1:
        return next(iter(labels.values()))
    return "; ".join(f"{model}: {label}" for model, label in labels.items())


def fidelity_table(rows: Sequence[Mapping[str, Any]], optimizer: str, num_seeds: int | None = None) -> Table:
    """claim | paper | blog | protocol | this run (value, CI, significant?) | p raw / Holm |
    smallest detectable | agrees?, one row per claim (the p and detectable columns:
    :func:`bnstudy.analysis.fidelity.fidelity_table`).

    ``protocol`` is the measurement protocol a claim is read in and ``optimizer`` (the one the
    models trained with, :func:`run_optimizer`): the paper's protocol is not the paper's optimizer."""
    columns = [f"p: raw / Holm ({len(rows)} claims)" if column.startswith("p: raw") else column
               for column in FIDELITY_COLUMNS]
    return Table(columns, [
        [str(row["claim"]), str(row["paper"]), str(row["blog"]), f"{row['protocol']}, {optimizer}",
         f"{row['measure']}: {row['this_run']}", p_values(row), detectable(row),
         agreement(row, num_seeds)] for row in rows])


READINGS_COLUMNS = ["claim", "pair: optimizer", "protocol", "this run (value, CI, significant?)",
                    "p: raw / Holm", "agrees?"]


def readings_table(rows: Sequence[Mapping[str, Any]], records: Mapping[str, Mapping[str, Any]],
                   num_seeds: int | None = None) -> Table:
    """Each claim in every comparison of BN against no BN and every protocol the study
    measured (:func:`bnstudy.analysis.fidelity.fidelity_readings`), a claim's readings side by
    side: claim | pair: optimizer | protocol | this run | p raw / Holm over every test of the
    table | agrees?. ``records``: every model's run record (its optimizer)."""
    order = {key: index for index, key in enumerate(dict.fromkeys(row["key"] for row in rows))}
    columns = [f"p: raw / Holm ({len(rows)} tests)" if column.startswith("p: raw") else column
               for column in READINGS_COLUMNS]
    ordered = sorted(rows, key=lambda row: order[row["key"]])  # stable: the readings' order within a claim
    return Table(columns, [
        [str(row["claim"]),
         f"{row['treatment']} vs {row['reference']}: "
         f"{run_optimizer({m: records[m] for m in (row['reference'], row['treatment'])})}",
         str(row["protocol"]), f"{row['measure']}: {row['this_run']}", p_values(row),
         agreement(row, num_seeds)] for row in ordered])


def summary_table(rows: Sequence[Mapping[str, Any]] | None, comparison: Mapping[str, Any],
                  num_seeds: int | None = None) -> Table:
    """The box a report opens with: each Fidelity claim (``rows``), its verdict, this run's
    estimate with its 95% interval, and its p raw / Holm; without claims (a pair other than BN
    against no BN), each measure of the headline ``comparison`` and its overall reading."""
    if rows:
        return Table(["claim", "verdict", "this run: estimate [95% CI]", "p: raw / Holm"], [
            [str(row["claim"]), agreement(row, num_seeds), str(row["this_run"]), p_values(row)] for row in rows])
    return Table(["measure", "this run: estimate [95% CI]"], [
        [str(measure["label"]), str(measure["overall"]["text"])] for measure in comparison.get("measures", {}).values()])


def views_table(measure: Mapping[str, Any]) -> Table:
    """Every view of one measurement: overall, matched loss, normalized (when computed) and
    the thirds of training."""
    rows = [[words, measure[key]["text"]] for key, words in VIEWS if key in measure]
    rows += [[f"{phase} third of training", measure["phases"][phase]["text"]]
             for phase in PHASES if phase in measure.get("phases", {})]
    return Table(["view", "BN vs no BN across seeds"], rows)


def measure_notes(measure: Mapping[str, Any]) -> list[str]:
    """The disagreement between views (when there is one) and the stalled rows left out."""
    notes = []
    if measure.get("disagreement"):
        notes.append(f"Note: {measure['disagreement']}.")
    excluded = measure.get("excluded_stalled_rows")
    if excluded:
        notes.append(f"{excluded} measured (seed, step) rows at a stalled step were excluded.")
    return notes


def conclusion_bullets(summary: Mapping[str, Any]) -> list[str]:
    """One line per measurement: its label and the overall comparison across seeds."""
    lines = []
    for name, measure in summary["measures"].items():
        line = f"**{measure['label']}** (`{name}`): {measure['overall']['text']}"
        if measure.get("disagreement"):
            line += f"; {measure['disagreement']}"
        lines.append(line + ".")
    return lines


def init_distance_reading(measures: Mapping[str, Any], words: tuple[str, str] = ("BN", "no BN")
                          ) -> str | None:
    """Which form of the distance from initialization carries its comparison: the absolute
    distance decomposes into the kernels' norm growth and their angle to W_0 (``||W - W_0||^2
    = ||W||^2 + ||W_0||^2 - 2 ||W|| ||W_0|| cos(angle)``). A form carries it when it differs
    significantly in the same direction. None without the geometry measures."""
    names = ("init_distance", "init_distance_rel", "init_norm_growth", "init_angle")
    if not all(name in measures for name in names):
        return None
    overall = {name: measures[name]["overall"] for name in names}
    treated, reference = words
    forms = (f"absolute {overall['init_distance']['text']}; relative "
             f"{overall['init_distance_rel']['text']}; norm growth "
             f"{overall['init_norm_growth']['text']}; angle {overall['init_angle']['text']}")
    direction = overall["init_distance"]["direction"]
    if direction == "none":
        return (f"The distance from initialization, in its forms ({forms}): the absolute "
                f"distance does not differ significantly between {treated} and {reference}.")
    further = "further from" if direction == "higher" else "closer to"
    carriers = [form for form, name in (("the growth of the kernels' norm", "init_norm_growth"),
                                        ("the angle they turn through", "init_angle"))
                if overall[name]["direction"] == direction]
    if len(carriers) == 2:
        verdict = f"both {carriers[0]} and {carriers[1]} carry it"
    elif carriers == ["the growth of the kernels' norm"]:
        verdict = ("the growth of the kernels' norm carries it, not their direction (the angle "
                   "does not differ in that direction): the distance is then growth of scale, "
                   "which the loss of a kernel followed by a normalization does not see")
    elif carriers:
        verdict = f"{carriers[0]} carries it, not the growth of the norm"
    else:
        verdict = "neither the norm's growth nor the angle alone differs in that direction"
    return (f"{treated}'s kernels end {further} their initialization ({forms}); of its "
            f"forms, {verdict}.")


def _step(value: Any) -> str:
    return "never" if value is None or (isinstance(value, float) and math.isnan(value)) else f"step {int(value)}"


def stalled_paragraphs(stalled: Mapping[str, Any]) -> list[str]:
    """Which steps were left out as stalled, and where each model left the plateau per seed."""
    if not stalled:
        return []
    total = int(stalled["total_steps"])
    counts = stalled.get("stalled_steps", {})
    excluded = "; ".join(f"seed {seed}: {n} of {total}" for seed, n in counts.items()) or "none"
    text = [f"Stalled steps, where either model of a seed sits at chance level (smoothed training loss "
            f"within 1% of ln 10), are excluded from every comparison: {excluded} steps."]
    exits = []
    for model, per_seed in stalled.get("plateau_exit_step", {}).items():
        where = ", ".join(f"{_step(step)} (seed {seed})" for seed, step in per_seed.items())
        exits.append(f"{MODEL_NAMES.get(model, model)}: {where}")
    if exits:
        text.append("Where each model left the plateau (its smoothed training loss first below 2.0): "
                    + "; ".join(exits) + ".")
    return text


def pct(value: Any) -> str:
    """A fraction as a percentage with one decimal, '-' when missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{100 * float(value):.1f}%"


def accuracy_table(records: Mapping[str, Mapping[str, Any]],
                   names: tuple[str, str] = ("no BN", "BN")) -> Table:
    """Final test accuracy per seed for both models (``records`` by role: ``baseline`` = the
    reference, ``candidate`` = the treatment, ``names`` their words) and their difference."""
    base, cand = records["baseline"].get("per_seed", {}), records["candidate"].get("per_seed", {})
    rows = []
    for seed in base:
        b = base[seed]["final_test_accuracy"]
        c = cand.get(seed, {}).get("final_test_accuracy")
        diff = f"{100 * (c - b):+.1f} points" if c is not None and b is not None else "-"
        rows.append([str(seed), _accuracy(base[seed]), _accuracy(cand.get(seed, {})), diff])
    if names == ("no BN", "BN"):
        return Table(["seed", "without BatchNorm", "with BatchNorm", "difference (BN - no BN)"], rows)
    return Table(["seed", names[0], names[1], f"difference ({names[1]} - {names[0]})"], rows)


def loss_table(records: Mapping[str, Mapping[str, Any]], names: tuple[str, str]) -> Table:
    """Final test loss per seed (and learning rate) for both models (``records`` by role, as
    :func:`accuracy_table`) and their ratio: the table of a regression."""
    base, cand = records["baseline"].get("per_seed", {}), records["candidate"].get("per_seed", {})

    def shown(entry: Mapping[str, Any]) -> str:
        if entry.get("diverged_at") is not None:
            return f"diverged at step {entry['diverged_at']}"
        value = entry.get("final_test_loss")
        return "-" if value is None else f"{float(value):.4g}"

    rows = []
    for seed, entry in base.items():
        other = cand.get(seed, {})
        b, c = entry.get("final_test_loss"), other.get("final_test_loss")
        ratio = f"{c / b:.3g}" if b and c is not None and math.isfinite(b) and math.isfinite(c) else "-"
        rows.append([str(seed), shown(entry), shown(other), ratio])
    return Table(["seed", names[0], names[1], f"ratio ({names[1]} / {names[0]})"], rows)


def _accuracy(entry: Mapping[str, Any]) -> str:
    """A seed's final test accuracy, or where it diverged."""
    if entry.get("diverged_at") is not None:
        return f"diverged at step {entry['diverged_at']}"
    return pct(entry.get("final_test_accuracy"))


METRIC_FIELDS = {"estimate": "{kind}", "low": "{kind}_ci_low", "high": "{kind}_ci_high", "p_value": "p_value"}
"""What the study's MLflow run gets of a measure's overall comparison, named for what it is:
``<measure>.ratio`` (treatment / reference, a geometric mean) or ``<measure>.difference``
(treatment - reference), its 95% interval ``.ratio_ci_low`` / ``.ratio_ci_high``, and its
paired test's ``.p_value``."""
METRIC_DIGITS = 4
"""Significant digits of a study metric: the MLflow UI shows a float's 17 (the exact values are
in the summaries' JSON)."""


def measure_metrics(name: str, overall: Mapping[str, Any]) -> dict[str, Any]:
    """``{<name>.<field>: value}`` of one overall comparison (:data:`METRIC_FIELDS`)."""
    kind = overall.get("kind") or "estimate"
    return {f"{name}.{field.format(kind=kind)}": overall.get(key) for key, field in METRIC_FIELDS.items()}


def headline_metrics(summary: Mapping[str, Any], records: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Numbers for the study's MLflow run: each model's seed-mean final test accuracy
    (``records`` by model name), and per measurement the overall estimate, interval and
    p-value (missing values left out)."""
    values: dict[str, Any] = {f"{m}.final_test_accuracy": r.get("final_test_accuracy") for m, r in records.items()}
    for name, measure in summary["measures"].items():
        values.update(measure_metrics(name, measure["overall"]))
    return _finite(values)


def further_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """A further comparison's numbers for the study's MLflow run: the overall estimate,
    interval and p-value of each measure of :data:`COMPARED` (its table's), as
    ``<treatment>_vs_<reference>[/lr_<x>]/<measure>.<field>`` (MLflow names allow no ``@``)."""
    prefix = f"{summary['treatment']}_vs_{summary['reference']}"
    if summary.get("learning_rate") is not None:
        prefix += f"/{learning_rate_key(summary['learning_rate'])}"
    preset = main_preset(summary)
    values: dict[str, Any] = {}
    for template in COMPARED:
        name = template.format(preset=preset)
        measure = summary.get("measures", {}).get(name)
        if measure is not None:
            values.update(measure_metrics(f"{prefix}/{name}", measure["overall"]))
    return _finite(values)


def _finite(values: Mapping[str, Any]) -> dict[str, float]:
    return {key: float(f"{v:.{METRIC_DIGITS}g}") for key, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


COMPARED = ("test_accuracy", "{preset}/loss_range", "{preset}/grad_diff_max",
            "{preset}/beta_smoothness", "{preset}/ics_l2", "activation/delta_mu",
            "init_distance")
"""The measures a comparison's table lists (the headline's sections list every measure)."""


def main_preset(summary: Mapping[str, Any]) -> str:
    """The protocol a comparison's table reads: ``paper`` when measured, else the first."""
    presets = [name.split("/")[0] for name in summary.get("measures", {}) if name.endswith("/loss_range")]
    return "paper" if "paper" in presets else (presets[0] if presets else "paper")


def comparison_table(summary: Mapping[str, Any]) -> Table:
    """measure | the treatment against its reference (estimate, interval, test)."""
    preset = main_preset(summary)
    rows = []
    for template in COMPARED:
        measure = summary.get("measures", {}).get(template.format(preset=preset))
        if measure is not None:
            rows.append([measure["label"], measure["overall"]["text"]])
    return Table(["measure", "comparison across seeds"], rows)
