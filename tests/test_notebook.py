"""notebooks/explore_study.ipynb: stored without outputs, and executed headless (nbmake)
against a finished test-environment study."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import nbformat
import pytest

from tests.conftest import PROJECT_ROOT

NOTEBOOK = PROJECT_ROOT / "notebooks" / "explore_study.ipynb"


def test_notebook_is_stored_with_its_outputs_stripped():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, "the notebook has no code"
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    source = "\n".join(cell.source for cell in code)
    assert "%load_ext kedro.ipython" in source and "catalog.load(" in source


@pytest.mark.slow
def test_notebook_runs_headless_against_the_test_study(finished_study):
    """Every cell runs (its own asserts check that the data is there); a failing cell fails
    this test with the cell's traceback."""
    folder = finished_study / "notebooks"
    folder.mkdir(exist_ok=True)
    shutil.copy(NOTEBOOK, folder)
    env = {**os.environ, "BNSTUDY_ENV": "test", "KEDRO_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg"}
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbmake",
         str(folder / NOTEBOOK.name)],
        cwd=finished_study, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "1 passed" in result.stdout
