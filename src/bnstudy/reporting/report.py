"""The study's report: conclusions computed from the analysis summaries, as Markdown and HTML.

No claim is hard-coded: every sentence is chosen by comparing numbers from the summaries
(see :func:`verdict`), so when the data say BatchNorm is not smoother, the report says so.
Pure Python (no Kedro).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MEASURES = {
    "loss_landscape": ("Loss landscape", "loss range along the gradient", "smoother loss landscape"),
    "gradient_predictiveness": ("Gradient predictiveness", "max gradient change along the gradient",
                                "more predictive gradients"),
    "beta_smoothness": ("Effective beta-smoothness", "effective beta-smoothness", "smaller effective beta-smoothness"),
}


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers as the report prints them: 4 significant digits, '-' for missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{float(value):.{digits}g}"


def pct(value: Any) -> str:
    """A fraction as a percentage with one decimal."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{100 * float(value):.1f}%"


def verdict(ratio: float | None, better_fraction: float | None) -> str:
    """``"yes"`` when the candidate's median is lower (ratio < 1) *and* it is better at most
    steps, ``"no"`` when neither holds, ``"mixed"`` otherwise, ``"n/a"`` without data."""
    if ratio is None or better_fraction is None:
        return "n/a"
    lower, majority = ratio < 1.0, better_fraction > 0.5
    return "yes" if lower and majority else "no" if not lower and not majority else "mixed"


def majority_verdict(first: float | None, second: float | None) -> str:
    """For two fractions of layers where the candidate is better: ``"yes"`` when both are
    majorities, ``"no"`` when neither is, ``"mixed"`` otherwise."""
    if first is None or second is None:
        return "n/a"
    return {2: "yes", 1: "mixed", 0: "no"}[int(first > 0.5) + int(second > 0.5)]


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)  # figure names, in order
    tables: list[tuple[str, Table]] = field(default_factory=list)


@dataclass
class Finding:
    topic: str
    preset: str
    verdict: str  # yes / no / mixed / n/a
    sentence: str


def _phase_table(comparison: Mapping[str, Any], what: str) -> Table:
    rows = []
    for phase, block in [*comparison["phases"].items(), ("overall", comparison["overall"])]:
        rows.append([phase, fmt(block["baseline_median"]), fmt(block["candidate_median"]), fmt(block["ratio"]),
                     pct(block["candidate_better_fraction"]), fmt(block["steps"])])
    return Table(["phase", f"baseline median {what}", f"candidate median {what}", "ratio cand/base",
                  "steps candidate lower", "steps"], rows)


def build_report(summaries: Mapping[str, Mapping[str, Any]], run_records: Mapping[str, Mapping[str, Any]]
                 ) -> tuple[list[Section], list[Finding]]:
    """Sections and findings of the report from the analysis summaries and run records."""
    sections, findings = [], []
    base_record, cand_record = run_records["baseline"], run_records["candidate"]

    # -- setup
    model, train = cand_record["model_config"], cand_record["train_config"]
    presets = [m["name"] for m in cand_record["measurement_configs"]]
    setup = Section("Setup", paragraphs=[
        f"Two VGG networks with convolution widths {model['conv_features']} x {fmt(model['width_multiplier'])}, "
        f"identical but for BatchNorm after every convolution (the candidate) or none (the baseline), "
        f"built from seed {train['seed']} so their shared weights start identical, trained for "
        f"{fmt(base_record['num_steps'])} steps of SGD (lr {fmt(train['learning_rate'])}, momentum "
        f"{fmt(train['momentum'])}, batch {train['batch_size']}). Measurement protocols: "
        f"{', '.join(presets)}. Wall time: baseline {fmt(base_record['wall_time_s'], 3)} s, candidate "
        f"{fmt(cand_record['wall_time_s'], 3)} s."])
    sections.append(setup)

    # -- training
    curves = summaries["training_curves"]
    base_m, cand_m = curves["models"]["baseline"], curves["models"]["candidate"]
    smoothed = curves["smoothed_train_loss"]["overall"]
    faster = smoothed["candidate_better_fraction"]
    gain = curves["test_accuracy_gain"]
    trains_faster = faster is not None and faster > 0.5
    findings.append(Finding("training speed", "", "yes" if trains_faster else "no",
                            f"With BatchNorm the smoothed training loss was lower at {pct(faster)} of steps, so the "
                            f"candidate {'trained faster' if trains_faster else 'did not train faster'}; final test "
                            f"accuracy {pct(cand_m['final_test_accuracy'])} with BatchNorm vs "
                            f"{pct(base_m['final_test_accuracy'])} without ({'+' if gain >= 0 else ''}"
                            f"{100 * gain:.1f} points)."))
    sections.append(Section(
        "Training", paragraphs=[findings[-1].sentence],
        figures=["training_curves"],
        tables=[("Final numbers", Table(
            ["model", "final test accuracy", "best test accuracy", "final test loss",
             f"train loss (last {curves['smoothing_window']} steps)", "steps"],
            [[name, pct(m["final_test_accuracy"]), pct(m["best_test_accuracy"]), fmt(m["final_test_loss"]),
              fmt(m["final_train_loss"]), fmt(m["num_steps"])] for name, m in curves["models"].items()])),
            ("Smoothed training loss by phase", _phase_table(curves["smoothed_train_loss"], "loss"))]))

    # -- activation shift
    shift = summaries["activation_shift"]
    frac_mu = shift["fraction_layers_candidate_lower_delta_mu"]
    frac_var = shift["fraction_layers_candidate_lower_delta_var"]
    stable = majority_verdict(frac_mu, frac_var)
    findings.append(Finding("activation shift (Ioffe-Szegedy)", "", stable,
                            f"Between activation snapshots the per-channel means moved less with BatchNorm in "
                            f"{pct(frac_mu)} of layers and the variances in {pct(frac_var)} of layers."))
    sections.append(Section(
        "Activation distributions (the Ioffe-Szegedy notion of shift)",
        paragraphs=[findings[-1].sentence],
        figures=["activation_histograms", "activation_animation", "activation_shift"],
        tables=[("Median shift between snapshots per layer", Table(
            ["layer", "baseline |dmu|", "candidate |dmu|", "baseline |dvar|", "candidate |dvar|"],
            [[layer, fmt(v["delta_mu"]["overall"]["baseline_median"]), fmt(v["delta_mu"]["overall"]["candidate_median"]),
              fmt(v["delta_var"]["overall"]["baseline_median"]), fmt(v["delta_var"]["overall"]["candidate_median"])]
             for layer, v in shift["layers"].items()]))]))

    # -- gradient ICS
    ics = summaries["gradient_ics"]
    ics_section = Section("Gradient-based internal covariate shift (Santurkar et al., Def. 2.1)", figures=["gradient_ics"])
    for preset, block in ics.items():
        frac_l2, frac_cos = block["fraction_layers_candidate_lower_l2"], block["fraction_layers_candidate_higher_cosine"]
        reduces = majority_verdict(frac_l2, frac_cos)
        findings.append(Finding("gradient ICS reduced", preset, reduces,
                                f"[{preset}] BatchNorm lowered the median ICS L2 distance in {pct(frac_l2)} of layers "
                                f"and raised the median ICS cosine in {pct(frac_cos)} of layers."))
        ics_section.paragraphs.append(findings[-1].sentence)
        ics_section.tables.append((f"Median ICS per layer ({preset})", Table(
            ["layer", "baseline L2", "candidate L2", "baseline cosine", "candidate cosine"],
            [[layer, fmt(v["ics_l2"]["overall"]["baseline_median"]), fmt(v["ics_l2"]["overall"]["candidate_median"]),
              fmt(v["ics_cosine"]["overall"]["baseline_median"]), fmt(v["ics_cosine"]["overall"]["candidate_median"])]
             for layer, v in block["layers"].items()])))
    sections.append(ics_section)

    # -- smoothness measures
    for key, (title, what, claim) in MEASURES.items():
        summary = summaries[key]
        section = Section(title, figures=[key])
        for preset, comparison in summary["presets"].items():
            overall = comparison["overall"]
            result = verdict(overall["ratio"], overall["candidate_better_fraction"])
            findings.append(Finding(claim, preset, result,
                                    f"[{preset}] Median {what}: {fmt(overall['candidate_median'])} with BatchNorm vs "
                                    f"{fmt(overall['baseline_median'])} without (ratio {fmt(overall['ratio'])}); the "
                                    f"candidate's was lower at {pct(overall['candidate_better_fraction'])} of steps. "
                                    f"BatchNorm gives {claim}: {result}."))
            section.paragraphs.append(findings[-1].sentence)
            section.tables.append((f"{title} by phase ({preset})", _phase_table(comparison, what)))
        sections.append(section)

    # -- init distance
    init = summaries["init_distance"]
    frac = init["fraction_layers_candidate_closer"]
    findings.append(Finding("closer to initialization", "", "yes" if frac is not None and frac > 0.5 else "no",
                            f"At step {init['final_step']} the candidate's kernels were closer to their initialization "
                            f"in {pct(frac)} of layers."))
    sections.append(Section("Distance from initialization", paragraphs=[findings[-1].sentence],
                            figures=["init_distance"],
                            tables=[("Final distance per layer", Table(
                                ["layer", "baseline", "candidate", "ratio", "baseline rel", "candidate rel"],
                                [[layer, fmt(v["baseline_abs"]), fmt(v["candidate_abs"]), fmt(v["ratio_abs"]),
                                  fmt(v["baseline_rel"]), fmt(v["candidate_rel"])]
                                 for layer, v in init["layers"].items()]))]))

    # -- protocols
    by_topic: dict[str, dict[str, str]] = {}
    for finding in findings:
        if finding.preset:
            by_topic.setdefault(finding.topic, {})[finding.preset] = finding.verdict
    rows, disagreements = [], []
    for topic, verdicts in by_topic.items():
        agree = len(set(verdicts.values())) == 1
        rows.append([topic, *[verdicts.get(p, "-") for p in presets], "yes" if agree else "no"])
        if not agree:
            disagreements.append(topic)
    protocol_text = (f"The protocols disagree on: {', '.join(disagreements)}." if disagreements
                     else "Both protocols reach the same verdict on every measurement.")
    sections.append(Section("Blog protocol vs paper protocol", paragraphs=[
        "The blog measured ICS with BatchNorm in inference mode and started its probes after the update; "
        "the paper measures in training mode from the weights before the update (docs/measurements.md). "
        + protocol_text],
        tables=[("Verdicts per protocol", Table(["finding", *presets, "agree"], rows))]))
    return sections, findings


# ----------------------------------------------------------------------------- rendering


def _md_table(table: Table) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return "\n".join(lines)


def _mime(name: str, payload: bytes) -> str:
    return "image/gif" if payload[:4] == b"GIF8" else "image/png"


def render_markdown(title: str, sections: Sequence[Section], findings: Sequence[Finding],
                    figures: Mapping[str, bytes]) -> str:
    """The report as Markdown; figures embedded as data URIs so the file stands alone."""
    out = [f"# {title}", "", "## Conclusions", ""]
    out += [f"- **{f.topic}{f' ({f.preset})' if f.preset else ''}: {f.verdict}.** {f.sentence}" for f in findings]
    for section in sections:
        out += ["", f"## {section.title}", ""]
        out += [p + "\n" for p in section.paragraphs]
        for name in section.figures:
            if name in figures:
                data = base64.b64encode(figures[name]).decode()
                out.append(f"![{name}](data:{_mime(name, figures[name])};base64,{data})\n")
        for caption, table in section.tables:
            out += [f"**{caption}**", "", _md_table(table), ""]
    return "\n".join(out) + "\n"


def render_html(title: str, sections: Sequence[Section], findings: Sequence[Finding],
                figures: Mapping[str, bytes]) -> str:
    """The report as one self-contained HTML page (figures inline)."""
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.45}"
             "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%}"
             ".yes{color:#1a7f37}.no{color:#b42318}.mixed{color:#9a6700}</style></head><body>",
             f"<h1>{esc(title)}</h1><h2>Conclusions</h2><ul>"]
    for f in findings:
        label = f"{f.topic}{f' ({f.preset})' if f.preset else ''}"
        parts.append(f"<li><b>{esc(label)}: <span class='{esc(f.verdict)}'>{esc(f.verdict)}</span>.</b> "
                     f"{esc(f.sentence)}</li>")
    parts.append("</ul>")
    for section in sections:
        parts.append(f"<h2>{esc(section.title)}</h2>")
        parts += [f"<p>{esc(p)}</p>" for p in section.paragraphs]
        for name in section.figures:
            if name in figures:
                data = base64.b64encode(figures[name]).decode()
                parts.append(f"<img alt='{esc(name)}' src='data:{_mime(name, figures[name])};base64,{data}'>")
        for caption, table in section.tables:
            head = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
            body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table.rows)
            parts.append(f"<p><b>{esc(caption)}</b></p><table><tr>{head}</tr>{body}</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
