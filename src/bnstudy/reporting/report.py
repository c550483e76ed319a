"""The study's report: Setup (provenance), Fidelity, the sections of the study's own questions
(:class:`~bnstudy.reporting.document.ReportPart`), seed-aware conclusions, the figures and a
section per further comparison.

Pure Python (no Kedro). :func:`build_report` assembles a :class:`~bnstudy.reporting.document.Report`
from the analysis's ``model_comparisons_summary`` and ``fidelity_summary``, the run records,
the data provenance and the parameters; :mod:`bnstudy.reporting.document` renders it. No
claim is hard-coded or decided from a single run's medians: every conclusion is a comparison
across seeds with its interval and test (:mod:`bnstudy.reporting.conclusions`), and with one
seed the report opens by saying that nothing could be tested.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bnstudy.analysis.fidelity import BLOG_OPTIMIZER, PAPER_OPTIMIZER, optimizer_label
from bnstudy.analysis.study import model_word
from bnstudy.reporting import conclusions as words
from bnstudy.reporting.captions import figure_captions
from bnstudy.reporting.document import Report, ReportPart, Section, folded
from bnstudy.reporting.figures import zero_by_definition
from bnstudy.reporting.provenance import setup_table

# (section title, its figures, the measurements it concludes on: a name or a "/<suffix>")
TOPICS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("Training", ("training_curves",), ("test_accuracy",)),
    ("Activation distributions (the Ioffe-Szegedy notion of shift)",
     ("activation_histograms", "activation_final_snapshot", "activation_animation", "activation_shift"),
     ("activation/delta_mu", "activation/delta_var")),
    ("Gradient-based internal covariate shift (Santurkar et al., Def. 2.1)", ("gradient_ics",),
     ("/ics_l2", "/ics_cosine")),
    ("Loss landscape", ("loss_landscape",), ("/loss_range",)),
    ("Gradient predictiveness", ("gradient_predictiveness", "gradient_difference"), ("/grad_diff_max",)),
    ("Effective beta-smoothness", ("beta_smoothness",), ("/beta_smoothness",)),
    ("Distance from initialization", ("init_distance",),
     ("init_distance", "init_distance_rel", "init_norm_growth", "init_angle")),
)


FOLDED_FIGURES = ("activation_final_snapshot", "activation_animation")
"""Figures the report shows on a click (<details>): the every-layer views of the activations,
beside the readable 4 x 4 grid of ``activation_histograms``."""


def _matches(name: str, selector: str) -> bool:
    return name.endswith(selector) if selector.startswith("/") else name == selector


def measure_section(name: str, measure: Mapping[str, Any]) -> Section:
    """One measurement: its overall comparison, every view, disagreements, exclusions."""
    label = measure["label"]
    return Section(label[:1].upper() + label[1:], level=3,
                   paragraphs=[f"`{name}`: {measure['overall']['text']}.", *words.measure_notes(measure)],
                   tables=[("Every view", folded(words.views_table(measure)))])


def topic_sections(comparisons: Mapping[str, Any]) -> list[Section]:
    """A section per topic (its figures), each followed by its measurements' sections."""
    measures = comparisons["measures"]
    reference, treatment = pair_names(comparisons)
    readings = {"Distance from initialization": words.init_distance_reading(
        measures, (model_word(treatment), model_word(reference)))}
    sections = []
    for title, figure_names, selectors in TOPICS:
        reading = readings.get(title)
        sections.append(Section(title, figures=list(figure_names),
                                paragraphs=[reading] if reading else [],
                                folded_figures=[n for n in figure_names if n in FOLDED_FIGURES]))
        for selector in selectors:
            sections += [measure_section(name, measure) for name, measure in measures.items()
                         if _matches(name, selector)]
    return sections


def pair_names(comparisons: Mapping[str, Any]) -> tuple[str, str]:
    """(reference, treatment) of a comparison summary; the paper's pair when it names none."""
    return comparisons.get("reference", "baseline"), comparisons.get("treatment", "candidate")


def conclusions_section(comparisons: Mapping[str, Any], records: Mapping[str, Mapping[str, Any]]) -> list[Section]:
    """Overall comparison per measurement, the stalled phase, final test accuracy per seed
    (final test loss for a regression, which has neither classes nor a chance level)."""
    reference, treatment = pair_names(comparisons)
    ref_word, treat_word = model_word(reference), model_word(treatment)
    regression = comparisons.get("task") == "regression"
    rate = (f" at lr {comparisons['learning_rate']:g} (the sweep's first learning rate; each other rate "
            "is a section of Further comparisons)" if comparisons.get("learning_rate") else "")
    if regression:
        loss = comparisons["measures"].get("test_loss", {}).get("overall", {})
        final = Section("Final test loss per seed", level=3,
                        paragraphs=[f"Geometric-mean ratio {treat_word} / {ref_word} of the final test "
                                    f"loss: {loss.get('text', 'not computed')}."],
                        tables=[("Final test loss", words.loss_table(records, (ref_word, treat_word)))])
    else:
        accuracy = comparisons["measures"].get("test_accuracy", {}).get("overall", {})
        final = Section("Final test accuracy per seed", level=3,
                        paragraphs=[f"Paired difference {treat_word} - {ref_word} (fractions of the test set): "
                                    f"{accuracy.get('text', 'not computed')}."],
                        tables=[("Final test accuracy", words.accuracy_table(records, (ref_word, treat_word)))])
    stalled = (["No step is excluded as stalled: a regression has no chance level to stall at."]
               if regression else words.stalled_paragraphs(comparisons["stalled"]))
    return [
        Section("Conclusions", paragraphs=[
            f"Each line: {treat_word} ({treatment}) against {ref_word} ({reference}){rate}, one statistic per "
            "seed, paired across seeds; the views of each measurement (matched loss, normalized, thirds of "
            "training) are in its section below.", *stalled],
            bullets=words.conclusion_bullets(comparisons)),
        final,
    ]


def is_bn_against_no_bn(records: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether the headline pair is the paper's: no normalization against BatchNorm."""
    normalization = {role: record.get("model_config", {}).get("normalization")
                     for role, record in records.items()}
    return normalization == {"baseline": "none", "candidate": "batch"}


def fidelity_section(fidelity: Mapping[str, Any], num_seeds: int,
                     records: Mapping[str, Mapping[str, Any]],
                     study_records: Mapping[str, Mapping[str, Any]] | None = None) -> Section:
    """The Fidelity table: each claim of the paper and the blog against this run (only when
    the headline pair is BatchNorm against no normalization, the pair the claims are about),
    and when the study read them more than once (another pair of BN against no BN, another
    protocol) every reading side by side (:func:`readings_section`)."""
    if not is_bn_against_no_bn(records):
        return Section("Fidelity", paragraphs=[
            "The claims of Santurkar et al. (2018) and of the blog compare BatchNorm with no normalization; "
            "this study's headline comparison is another pair, so no claim is read from it here (its "
            "comparisons are in the sections below)."])
    tables = [("Fidelity", words.fidelity_table(fidelity["rows"], words.run_optimizer(records), num_seeds))]
    paragraphs = [
        "Each claim of Santurkar et al. (2018) and of the blog reproducing it, against this run's comparison "
        "across seeds (the measure it is read from, the ratio or difference BN / no BN, its 95% t interval and "
        "the paired test). 'protocol' names the measurement protocol the claim is read in (how it is measured) "
        f"and the optimizer the models trained with: the {optimizer_label(*PAPER_OPTIMIZER)}, the "
        f"{optimizer_label(*BLOG_OPTIMIZER)} or settings of their own. "
        "'agrees?' says what the verdict rests on; with one seed no claim is tested."]
    readings = [row for row in fidelity.get("readings") or []
                if {row["reference"], row["treatment"]} <= set(study_records or {})]
    if len({(row["comparison"], row["preset"]) for row in readings if row["preset"]}) > 1:
        paragraphs.append(
            "Below it, each claim as every pair of BN against no BN in this study reads it, in every protocol "
            "it measured: the paper's protocol with the paper's optimizer beside the same protocol with the "
            "blog's, and the blog's own protocol (BN in inference mode, probes after the update). The claims "
            "without a protocol (the activation shift, the distance from initialization) are read once per "
            "pair. Holm's adjustment runs over every test of this table, so its adjusted p are at least the "
            "table's above.")
        tables.append(("Every reading: pair, optimizer and protocol",
                       folded(words.readings_table(readings, study_records, num_seeds))))
    return Section("Fidelity", paragraphs=paragraphs, tables=tables)


def further_sections(further: Mapping[str, Mapping[str, Any]]) -> list[Section]:
    """A section per further comparison of the study's roster: its conclusions and the
    measures of :data:`conclusions.COMPARED`, each across seeds."""
    if not further:
        return []
    sections = [Section("Further comparisons", paragraphs=[
        "The study's other comparisons (studies.<study>.comparisons of the roster), each measured "
        "as the headline comparison above: one statistic per seed, paired across the seeds healthy in "
        "both models, the ratio (or difference) treatment / reference with its 95% t interval."])]
    for summary in further.values():
        reference, treatment = summary["reference"], summary["treatment"]
        paragraphs = ([summary["note"]] if summary.get("note") else [])
        rate = f", at lr {summary['learning_rate']:g}" if summary.get("learning_rate") else ""
        sections.append(Section(
            f"{model_word(treatment)} against {model_word(reference)} ({treatment} vs "
            f"{reference}){rate}",
            level=3, paragraphs=paragraphs, bullets=words.conclusion_bullets(summary),
            tables=[("Every measure, paired by seed", folded(words.comparison_table(summary)))]))
    return sections


def build_report(comparisons: Mapping[str, Any], fidelity: Mapping[str, Any],
                 records: Mapping[str, Mapping[str, Any]], provenance: Mapping[str, Any],
                 preprocessing: Mapping[str, Any], params: Mapping[str, Any],
                 further: Mapping[str, Mapping[str, Any]] | None = None,
                 parts: Sequence[ReportPart] = (),
                 study_records: Mapping[str, Mapping[str, Any]] | None = None) -> Report:
    """The whole report.

    Args:
        comparisons: the headline comparison of ``model_comparisons_summary`` (``seeds``,
            ``measures``, ``stalled``).
        fidelity: ``fidelity_summary`` (``rows``).
        records: ``{"baseline": reference's run_record, "candidate": treatment's}``.
        provenance: ``cifar10_provenance``.
        preprocessing: the ``preprocessing`` parameters (subset sizes and seed).
        params: the ``reporting`` parameters (``title``, ``environment``).
        further: the study's other comparisons by key (:func:`further_sections`).
        parts: what the study's own questions add (their sections follow the Fidelity
            section; their captions join the figures').
        study_records: ``{model: run_record}`` of every model of the study, for the Setup
            (``records`` when not given).
    """
    # The run's order (its first seed is the one the histogram figures show), not sorted.
    seeds: Sequence[int] = records["candidate"].get("seeds") or comparisons.get("seeds", [])
    setup = Section("Setup (provenance)", tables=[
        ("Setup", setup_table(provenance, preprocessing, study_records or records, params.get("environment", "?")))])
    questions = [section for part in parts for section in part.sections]
    sections = [setup, fidelity_section(fidelity, len(seeds), records, study_records), *questions,
                *conclusions_section(comparisons, records), *topic_sections(comparisons),
                *further_sections(further or {})]
    captions = figure_captions(list(seeds), zero_by_definition(records),
                               regression=comparisons.get("task") == "regression",
                               sweep_rate=comparisons.get("learning_rate"))
    for part in parts:
        captions.update(part.captions)
    claims = fidelity["rows"] if is_bn_against_no_bn(records) else None
    return Report(title=params["title"], caveats=words.seed_caveats(seeds, comparisons), sections=sections,
                  captions=captions, summary=words.summary_table(claims, comparisons, len(seeds)))
