"""kedro viz previews of datasets that may not have been saved yet.

kedro viz asks every dataset of every registered pipeline for its preview; a versioned dataset
that no run has written yet (a study that was never run) raises ``VersionNotFoundError``, and
kedro viz logs a warning per dataset (hundreds in ``kedro viz build``). A preview wrapped in
:func:`saved_only` answers ``None`` instead, which kedro viz shows as no preview.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from kedro_datasets.json import JSONDataset

Preview = TypeVar("Preview")


def saved_only(preview: Callable[..., Preview]) -> Callable[..., Preview | None]:
    """``preview`` of a dataset, or None while the dataset has nothing saved (``exists()``).
    The wrapper keeps the preview's signature, whose return type tells kedro viz the kind."""

    @functools.wraps(preview)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Preview | None:
        if not self.exists():
            return None
        return preview(self, *args, **kwargs)

    return guarded


class PreviewedJSONDataset(JSONDataset):
    """``json.JSONDataset`` whose preview waits for a saved version (summaries, records)."""

    preview = saved_only(JSONDataset.preview)
