"""How long a study's report is to read: its HTML page's height in headless Chromium, and the
Markdown's lines, figures and sections; whether it opens with the summary box.

Give one or more reports (``report.md`` or ``report.html``; the other of the pair is found
beside it, as ReportDataset / HtmlDataset version them:
``data/08_reporting/report.md/<version>/report.md`` and ``.../report.html/<version>/report.html``).
Each report is measured in a fresh page of the same size, so heights compare in one run:

    .venv/bin/python benchmarks/report_length.py OLD/report.md NEW/report.md --width 1280

Printed per report: the page height in CSS pixels at ``--width`` (the document's
``scrollHeight`` after every image has loaded), the figures embedded, the Markdown's lines and
``##`` sections, and the title of the first section. Needs Debian's ``chromium`` (or
``BNSTUDY_CHROMIUM``) and Playwright, as the browser tests do.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from pathlib import Path


def _pair(path: Path) -> tuple[Path, Path | None]:
    """``(report.md, report.html or None)`` for a report given by either file."""
    name = path.name
    if name.endswith(".html"):
        md = Path(str(path).replace("report.html", "report.md"))
        return md, path
    html = Path(str(path).replace("report.md", "report.html"))
    return path, html if html.exists() else None


def markdown_figures(text: str) -> dict[str, object]:
    """Lines, ``##`` sections, images and the first section's title of a Markdown report."""
    sections = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    return {"lines": text.count("\n") + 1, "sections": len(sections),
            "images": len(re.findall(r"!\[[^\]]*\]\([^)]+\)", text)),
            "first_section": sections[0] if sections else None}


def page_height(html: Path, width: int, chromium: str) -> int:
    """The rendered page's scrollHeight in CSS pixels, images loaded."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": 1000})
            page.goto(html.resolve().as_uri())
            page.wait_for_load_state("load")
            page.wait_for_function("[...document.images].every(img => img.complete)")
            return int(page.evaluate("document.documentElement.scrollHeight"))
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--width", type=int, default=1280, help="page width in CSS pixels")
    args = parser.parse_args()
    chromium = os.environ.get("BNSTUDY_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    print(f"{'report':60s} {'height px':>10s} {'images':>7s} {'lines':>6s} {'sections':>9s}  first section")
    for given in args.reports:
        md, html = _pair(given)
        words = markdown_figures(md.read_text())
        height = page_height(html, args.width, chromium) if html is not None and chromium else None
        print(f"{str(given)[-60:]:60s} {height if height is not None else '-':>10} {words['images']:>7} "
              f"{words['lines']:>6} {words['sections']:>9}  {words['first_section']}")


if __name__ == "__main__":
    main()
