"""The study's conclusions as the description of its MLflow run (the parent run).

MLflow shows a run's ``mlflow.note.content`` tag as its description, rendered as Markdown, on
the run's page. kedro-mlflow has no dataset for it, so saving :class:`MlflowNoteDataset`
writes the study's block into that tag of the active run: several studies run by one ``kedro
run`` (``--pipelines full_study,beyond_study``) share the parent run, and each keeps a block of
its own between markers, replaced when the study runs again in that run.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from kedro.io.core import AbstractDataset, DatasetError

logger = logging.getLogger(__name__)

NOTE_TAG = "mlflow.note.content"
"""The tag MLflow's UI shows as a run's description."""


def _markers(study: str) -> tuple[str, str]:
    return f"<!-- bnstudy:{study} -->", f"<!-- /bnstudy:{study} -->"


def with_block(note: str, study: str, text: str) -> str:
    """``note`` with ``study``'s block (between its markers) set to ``text``: replaced where
    it was, appended otherwise; the other studies' blocks unchanged."""
    start, end = _markers(study)
    block = f"{start}\n{text.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), flags=re.S)
    if pattern.search(note):
        return pattern.sub(lambda _: block, note, count=1)
    return f"{note.rstrip()}\n\n{block}" if note.strip() else block


class MlflowNoteDataset(AbstractDataset[str, None]):
    """Save-only: a study's Markdown conclusions into the active MLflow run's description."""

    def __init__(self, *, study: str, metadata: dict[str, Any] | None = None) -> None:
        self._study = study
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"study": self._study, "tag": NOTE_TAG}

    def load(self) -> str:
        raise DatasetError(f"{type(self).__name__} is save-only: the note is in the MLflow run's "
                           f"'{NOTE_TAG}' tag.")

    def save(self, data: str) -> None:
        import mlflow

        active = mlflow.active_run()
        if active is None:
            logger.warning("No active MLflow run (tracking disabled for this pipeline?): the "
                           "'%s' study's description is not logged.", self._study)
            return
        client = mlflow.MlflowClient()
        note = client.get_run(active.info.run_id).data.tags.get(NOTE_TAG, "")
        client.set_tag(active.info.run_id, NOTE_TAG, with_block(note, self._study, data))

    def _exists(self) -> bool:
        return False
