"""The static site's ``api/metadata`` (bnstudy.viz_site) against what ``kedro viz run`` serves."""

import asyncio
import json

import pytest
from kedro_viz.api.rest import router

from bnstudy.viz_site import write_metadata


def test_metadata_is_the_response_kedro_viz_run_serves(tmp_path):
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "main").write_text("{}")
    written = json.loads(write_metadata(tmp_path).read_text())
    served = asyncio.run(router.get_metadata())  # the /api/metadata route's own handler
    assert written == {
        "has_missing_dependencies": served.has_missing_dependencies,
        "package_compatibilities": [p.model_dump() for p in served.package_compatibilities],
    }
    # the front end looks up fsspec's entry and reads is_compatible from it
    (fsspec,) = [p for p in written["package_compatibilities"] if p["package_name"] == "fsspec"]
    assert fsspec["is_compatible"] is True


def test_a_folder_that_is_not_a_build_is_refused_and_left_alone(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a kedro viz build.*kedro viz build"):
        write_metadata(tmp_path)
    assert list(tmp_path.iterdir()) == []
