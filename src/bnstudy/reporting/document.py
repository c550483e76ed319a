"""The report as a document (sections, tables, captioned figures) and its two renderings.

* Markdown links each figure by a relative path, ``figures/<name>.png`` (or ``.gif``):
  the report is saved with its figures next to it (``ReportDataset``), so the links resolve
  in the report's own version folder. No image is embedded.
* HTML embeds each figure as a data URI, so the page stands alone.

Both open the same way: the title, the summary box (:attr:`Report.summary`: each claim, its
verdict and its interval), the caveats, and a table of contents linking every top-level
section (GitHub's heading anchors in Markdown, :func:`anchors`; the same ids in HTML).

A study's own questions (``beyond_study``'s noise question, say) add to the general report
through :class:`ReportPart`: sections, the figures they show and those figures' captions, and
the MLflow metrics they give. The report node takes them as inputs (``part:<name>``,
``pipelines/reporting``); no question builds a report of its own.

Table cells are escaped for either format (a ``|`` inside a Markdown cell would end it).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

FIGURE_FOLDER = "figures"


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    folded: bool = False  # collapsed (<details>, caption and row count shown): the detail


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)  # figure names, in order
    tables: list[tuple[str, Table]] = field(default_factory=list)
    level: int = 2
    folded_figures: list[str] = field(default_factory=list)  # of figures: shown on a click


@dataclass
class Report:
    title: str
    caveats: list[str]
    sections: list[Section]
    captions: dict[str, str]  # figure name -> caption
    summary: Table | None = None  # the box the report opens with: each claim, verdict, CI


@dataclass
class ReportPart:
    """What one question of a study adds to the study's report.

    Attributes:
        sections: in order, after the report's Fidelity section.
        figures: ``{name: PNG or GIF bytes}`` of the figures its sections name.
        captions: ``{name: caption}`` of those figures.
        metrics: ``{name: value}`` for the study's MLflow run (``<study>.<name>``).
    """

    sections: list[Section]
    figures: dict[str, bytes] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def figure_file(name: str, payload: bytes) -> str:
    """The figure's path relative to the report: ``figures/<name>.png`` or ``.gif``."""
    suffix = ".gif" if payload[:4] == b"GIF8" else ".png"
    return f"{FIGURE_FOLDER}/{name}{suffix}"


def figure_files(figures: Mapping[str, bytes]) -> dict[str, bytes]:
    """``{relative path: bytes}`` of the files saved next to the Markdown report."""
    return {figure_file(name, payload): payload for name, payload in figures.items()}


def _numbered(report: Report, figures: Mapping[str, bytes]) -> dict[str, int]:
    names = [n for s in report.sections for n in s.figures if n in figures]
    return {name: i for i, name in enumerate(names, start=1)}


def md_cell(text: str) -> str:
    """A Markdown table cell: ``|`` escaped, line breaks flattened."""
    return " ".join(str(text).split()).replace("|", r"\|")


def markdown_table(table: Table) -> str:
    lines = ["| " + " | ".join(md_cell(c) for c in table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


SUMMARY_CAPTION = "Summary: each claim, its verdict and this run's estimate with its 95% interval"
CONTENTS_TITLE = "Contents"


def slug(title: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation but ``-`` and ``_``
    dropped, each space a ``-``."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def anchors(sections: list[Section]) -> list[str]:
    """Each section's anchor, a repeated one numbered ``-1``, ``-2`` as GitHub numbers them."""
    seen: dict[str, int] = {}
    out = []
    for section in sections:
        base = slug(section.title)
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.append(base if count == 0 else f"{base}-{count}")
    return out


def render_markdown(report: Report, figures: Mapping[str, bytes]) -> str:
    """The report as Markdown, linking its figures (see the module docstring)."""
    numbers = _numbered(report, figures)
    out = [f"# {report.title}", ""]
    if report.summary is not None:
        out += [f"> **{SUMMARY_CAPTION}**", ">"] + [f"> {line}" for line in markdown_table(report.summary).splitlines()]
        out += [""]
    out += [f"> {c}\n" for c in report.caveats]
    ids = anchors(report.sections)
    out += [f"**{CONTENTS_TITLE}**", ""]
    out += [f"- [{section.title}](#{anchor})" for section, anchor in zip(report.sections, ids, strict=True)
            if section.level == 2] + [""]
    for section in report.sections:
        out += ["#" * section.level + f" {section.title}", ""]
        out += [p + "\n" for p in section.paragraphs]
        if section.bullets:
            out += [f"- {b}" for b in section.bullets] + [""]
        for caption, table in section.tables:
            if table.folded:
                out += [f"<details><summary>{_folded_summary(caption, table)}</summary>", "",
                        markdown_table(table), "", "</details>", ""]
            else:
                out += [f"**{caption}**", "", markdown_table(table), ""]
        for name in section.figures:
            if name in figures:
                path = figure_file(name, figures[name])
                caption = report.captions.get(name, name)
                shown = [f"![Figure {numbers[name]}: {name}]({path})", "",
                         f"*Figure {numbers[name]}. {caption}* (`{path}`)", ""]
                if name in section.folded_figures:
                    shown = [f"<details><summary>{_folded_figure(numbers[name], name)}</summary>", "",
                             *shown, "</details>", ""]
                out += shown
    return "\n".join(out) + "\n"


def render_note(report: Report) -> str:
    """The study's description for its MLflow run: the title, the summary box and the
    caveats, in Markdown (MLflow renders a run's description as Markdown)."""
    out = [f"**{report.title}**", ""]
    if report.summary is not None:
        out += [f"*{SUMMARY_CAPTION}*", "", markdown_table(report.summary), ""]
    out += [f"> {c}\n" for c in report.caveats]
    out.append("The whole report, with its figures, is among this run's artifacts (report.md and report.html).")
    return "\n".join(out) + "\n"


def inline_html(text: str) -> str:
    """Escaped HTML of a line of the report's Markdown subset (``**bold**``, ```code```)."""
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def _mime(payload: bytes) -> str:
    return "image/gif" if payload[:4] == b"GIF8" else "image/png"


HTML_STYLE = (
    "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.45}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
    "text-align:left;vertical-align:top}th{background:#f3f3f3}img{max-width:100%}"
    "figure{margin:1em 0 2em}figcaption{font-style:italic;font-size:0.92em}"
    ".caveat{border-left:4px solid #9a6700;background:#fff8e6;padding:0.4em 1em}"
    ".summary{border:2px solid #1f4e79;background:#f4f8fc;padding:0.2em 1em;margin:1em 0}"
    "details{margin:0.3em 0 1.2em}summary{cursor:pointer}</style>"
)


def _folded_summary(caption: str, table: Table) -> str:
    """The line a folded table shows closed: its caption and how many rows it hides."""
    rows = len(table.rows)
    return f"<b>{html.escape(caption)}</b> ({rows} row{'s' if rows != 1 else ''}: click to open)"


def folded(table: Table) -> Table:
    """``table``, collapsed in the report (<details>: its caption and row count shown)."""
    return dataclasses.replace(table, folded=True)


def _folded_figure(number: int, name: str) -> str:
    return f"<b>Figure {number}: {html.escape(name)}</b> (click to show)"


def _html_table(caption: str, table: Table) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    if table.folded:
        return (f"<details><summary>{_folded_summary(caption, table)}</summary>"
                f"<table><tr>{head}</tr>{body}</table></details>")
    return f"<p><b>{esc(caption)}</b></p><table><tr>{head}</tr>{body}</table>"


def _html_section(section: Section, report: Report, figures: Mapping[str, bytes], numbers: dict[str, int],
                  anchor: str) -> list[str]:
    esc = html.escape
    level = min(section.level, 6)
    parts = [f"<h{level} id='{esc(anchor)}'>{esc(section.title)}</h{level}>"]
    parts += [f"<p>{inline_html(p)}</p>" for p in section.paragraphs]
    if section.bullets:
        parts.append("<ul>" + "".join(f"<li>{inline_html(b)}</li>" for b in section.bullets) + "</ul>")
    parts += [_html_table(caption, table) for caption, table in section.tables]
    for name in section.figures:
        if name in figures:
            data = base64.b64encode(figures[name]).decode()
            shown = (f"<figure><img alt='{esc(name)}' src='data:{_mime(figures[name])};base64,{data}'>"
                     f"<figcaption>Figure {numbers[name]}. {esc(report.captions.get(name, name))}"
                     "</figcaption></figure>")
            if name in section.folded_figures:
                shown = f"<details><summary>{_folded_figure(numbers[name], name)}</summary>{shown}</details>"
            parts.append(shown)
    return parts


def render_html(report: Report, figures: Mapping[str, bytes]) -> str:
    """The report as one self-contained HTML page (figures inline)."""
    esc = html.escape
    numbers = _numbered(report, figures)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(report.title)}</title>",
             HTML_STYLE, "</head><body>", f"<h1>{esc(report.title)}</h1>"]
    if report.summary is not None:
        parts.append(f"<div class='summary'>{_html_table(SUMMARY_CAPTION, report.summary)}</div>")
    parts += [f"<p class='caveat'>{inline_html(c)}</p>" for c in report.caveats]
    ids = anchors(report.sections)
    parts.append(f"<nav><p><b>{CONTENTS_TITLE}</b></p><ul>" + "".join(
        f"<li><a href='#{esc(anchor)}'>{esc(section.title)}</a></li>"
        for section, anchor in zip(report.sections, ids, strict=True) if section.level == 2) + "</ul></nav>")
    for section, anchor in zip(report.sections, ids, strict=True):
        parts += _html_section(section, report, figures, numbers, anchor)
    parts.append("</body></html>")
    return "\n".join(parts)
