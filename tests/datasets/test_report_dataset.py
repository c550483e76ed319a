"""ReportDataset: the Markdown report and the figures it links share one version folder."""

from __future__ import annotations

import re

import mlflow
import pytest
from kedro.io.core import DatasetError, Version

from bnstudy.datasets import ReportDataset

VERSION = "2026-01-02T03.04.05.678Z"
MARKDOWN = "# Report\n\n![Figure 1](figures/a.png)\n\n![Figure 2](figures/b.gif)\n"
FILES = {"figures/a.png": b"\x89PNG a", "figures/b.gif": b"GIF89a b"}


def _dataset(tmp_path, **kwargs) -> ReportDataset:
    return ReportDataset(filepath=str(tmp_path / "report.md"), version=Version(None, VERSION), **kwargs)


def test_every_link_of_the_saved_report_resolves_in_its_version_folder(tmp_path):
    dataset = _dataset(tmp_path)

    dataset.save({"text": MARKDOWN, "files": FILES})

    folder = tmp_path / "report.md" / VERSION
    report = folder / "report.md"
    assert report.read_text() == MARKDOWN
    for link in re.findall(r"\]\(([^)]+)\)", MARKDOWN):
        assert (folder / link).read_bytes() == FILES[link]
    assert ReportDataset(filepath=str(tmp_path / "report.md"), version=Version(None, None)).load() == MARKDOWN.encode()


def test_a_plain_string_is_saved_as_before(tmp_path):
    _dataset(tmp_path).save("# only text")
    assert (tmp_path / "report.md" / VERSION / "report.md").read_text() == "# only text"


@pytest.mark.parametrize("bad", ["../escape.png", "/abs/x.png"])
def test_attachments_cannot_leave_the_report_folder(tmp_path, bad):
    with pytest.raises(DatasetError, match="inside the report's folder"):
        _dataset(tmp_path).save({"text": MARKDOWN, "files": {bad: b"x"}})
    assert not (tmp_path / "escape.png").exists()


def test_figures_are_logged_beside_the_report_in_mlflow(tmp_path, monkeypatch):
    logged = []
    monkeypatch.setattr(mlflow, "active_run", object)
    monkeypatch.setattr(mlflow, "log_artifact", lambda path, artifact_path=None: logged.append((path, artifact_path)))

    _dataset(tmp_path, mlflow_artifact_path="report").save({"text": MARKDOWN, "files": FILES})

    assert sorted((p.rsplit("/", 1)[1], a) for p, a in logged) == [
        ("a.png", "report/figures"), ("b.gif", "report/figures"), ("report.md", "report")]
