"""benchmarks/report_length.py counts what a reader scrolls through."""

from __future__ import annotations

import importlib.util

from tests.conftest import PROJECT_ROOT

spec = importlib.util.spec_from_file_location("report_length", PROJECT_ROOT / "benchmarks" / "report_length.py")
report_length = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report_length)


def test_markdown_counts_sections_images_and_names_the_first_section():
    text = "# Title\n\n## Summary\n\n| a |\n\n![fig 1](figures/a.png)\n\n## Training\n\n![b](figures/b.png)\n"
    assert report_length.markdown_figures(text) == {
        "lines": 12, "sections": 2, "images": 2, "first_section": "Summary"}


def test_either_file_of_a_report_finds_the_other(tmp_path):
    md = tmp_path / "report.md" / "v1" / "report.md"
    html = tmp_path / "report.html" / "v1" / "report.html"
    for path in (md, html):
        path.parent.mkdir(parents=True)
        path.write_text("x")
    assert report_length._pair(md) == (md, html)
    assert report_length._pair(html) == (md, html)
