"""Fixtures of the pipeline tests: the session's run of the paper's optimizer's two studies."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.cli_helpers import kedro_env, new_project, run_kedro


@pytest.fixture(scope="session")
def paper_optimizer_run(tmp_path_factory) -> Path:
    """A project copy with `kedro run --env test --pipelines
    paper_optimizer_study,lr_sweep_study` finished: the data, the paper-optimizer pair, the
    learning-rate sweep's four models, and both studies' analyses and reports (one process
    for the two studies of the paper's optimizer; tests/pipelines/test_lr_sweep_study.py reads
    the sweep)."""
    project = new_project(tmp_path_factory.mktemp("paper_optimizer"))
    result = run_kedro(project, ["run", "--env", "test", "--pipelines", "paper_optimizer_study,lr_sweep_study"],
                       kedro_env(project), timeout_s=1500)
    assert result.returncode == 0, result.terminal[-4000:]
    return project
