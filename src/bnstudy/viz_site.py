"""The project's static kedro viz site: ``kedro viz build`` and the one API response it leaves out.

kedro-viz 12.5's front end asks the server for ``/api/metadata`` (the package compatibilities
it checks, e.g. fsspec) on every page load. ``kedro viz run`` answers it; ``kedro viz build``
writes ``api/main``, ``api/nodes``, ``api/pipelines``, ``api/run-status`` and ``api/version`` but
not ``api/metadata``, so the served site logs a 404 and a "metadata fetch error". This module
runs the build, then writes ``build/api/metadata`` with the response ``kedro viz run`` serves
(kedro-viz's own ``MetadataAPIResponse`` from ``get_package_compatibilities``)::

    .venv/bin/python -m bnstudy.viz_site            # = make viz-build
    .venv/bin/python -m http.server --bind 127.0.0.1 --directory build 4142

Options after the module name go to ``kedro viz build`` (default ``--include-previews``). A
failed build exits with the build's status and writes nothing of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DEFAULT_OPTIONS = ("--include-previews",)


def write_metadata(build: Path) -> Path:
    """Write ``<build>/api/metadata``: the JSON ``kedro viz run`` serves at ``/api/metadata``."""
    from kedro_viz.api.rest.responses.metadata import MetadataAPIResponse
    from kedro_viz.api.rest.utils import get_package_compatibilities

    api = build / "api"
    if not (api / "main").is_file():
        raise FileNotFoundError(f"{api / 'main'} is missing: {build} is not a kedro viz build. "
                                "Run `kedro viz build` in the project first.")
    response = MetadataAPIResponse(has_missing_dependencies=False,
                                   package_compatibilities=get_package_compatibilities())
    path = api / "metadata"
    path.write_text(response.model_dump_json())
    return path


def build(project: Path, options: tuple[str, ...] = DEFAULT_OPTIONS) -> int:
    """``kedro viz build <options>`` in ``project``, then its ``api/metadata``; the build's exit
    status (the metadata is written only after a build that succeeded)."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    status = subprocess.run([sys.executable, "-m", "kedro", "viz", "build", *options],
                            cwd=project, env=env, check=False).returncode
    if status == 0:
        sys.stdout.write(f"wrote {write_metadata(project / 'build')}\n")
    return status


if __name__ == "__main__":
    sys.exit(build(Path.cwd(), tuple(sys.argv[1:]) or DEFAULT_OPTIONS))
