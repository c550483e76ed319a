"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines: every folder of ``bnstudy.pipelines``.

    ``full_study`` (data_ingestion + preprocessing + training + analysis + reporting) is
    also the default pipeline.
    """
    pipelines = find_pipelines(raise_errors=True)
    if "full_study" in pipelines:
        pipelines["__default__"] = pipelines["full_study"]
    return pipelines
