"""``ReportDataset``: the Markdown report saved together with the figures it links.

The report links its figures by relative paths (``figures/<name>.png``); a versioned dataset
saves to ``<filepath>/<version>/<name>``, so the only links that stay right for every
version are links into the report's own version folder. This dataset writes the figures
there, next to the report:

    data/08_reporting/report.md/<version>/report.md
    data/08_reporting/report.md/<version>/figures/<name>.png

and, with ``mlflow_artifact_path``, logs them under ``<mlflow_artifact_path>/figures`` so the
links also resolve in the MLflow artifact view. Loading returns the Markdown's bytes.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from kedro.io.core import DatasetError, get_filepath_str
from kedro_datasets._typing import HTMLPreview

from bnstudy.datasets.bytes_dataset import BytesDataset
from bnstudy.datasets.previews import saved_only


class ReportDataset(BytesDataset):
    """Saves ``{"text": markdown, "files": {relative path: bytes}}`` (or plain ``str``/``bytes``):
    the files first, each written atomically, then the report, so a report on disk always has
    its figures. Example catalog entry::

        study_report_md:
          type: bnstudy.datasets.ReportDataset
          filepath: data/08_reporting/report.md
          versioned: true
          mlflow_artifact_path: report
    """

    def save(self, data: Mapping[str, Any] | bytes | str) -> None:
        if not isinstance(data, Mapping):
            super().save(data)
            return
        files = data.get("files", {})
        folder = PurePosixPath(get_filepath_str(self._get_save_path(), self._protocol)).parent
        written = []
        for relative, payload in files.items():
            path = PurePosixPath(relative)
            if path.is_absolute() or ".." in path.parts:
                raise DatasetError(f"ReportDataset: attachment paths must stay inside the report's folder, "
                                   f"got {relative!r}")
            written.append((path, self._write_file(str(folder / path), payload)))
        super().save(data["text"])
        if self._mlflow_artifact_path is not None:
            for path, local in written:
                self._log_file_to_mlflow(local, str(PurePosixPath(self._mlflow_artifact_path) / path.parent))

    @saved_only
    def preview(self) -> HTMLPreview:
        """The newest report's Markdown source, as preformatted text (kedro viz's
        ``HTMLPreview``; the rendered page is the ``study_report_html`` dataset)."""
        text = self._read_bytes().decode("utf-8")
        return HTMLPreview(f"<pre style='white-space: pre-wrap'>{html.escape(text)}</pre>")

    def _write_file(self, target: str, payload: bytes) -> str:
        temporary = f"{target}.tmp"
        self._fs.makedirs(str(PurePosixPath(target).parent), exist_ok=True)
        with self._fs.open(temporary, mode="wb") as handle:
            handle.write(payload)
        self._fs.mv(temporary, target)
        return target

    def _log_file_to_mlflow(self, local: str, artifact_path: str) -> None:
        import mlflow

        if mlflow.active_run() is not None and self._protocol == "file":
            mlflow.log_artifact(local, artifact_path=artifact_path)
