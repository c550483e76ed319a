"""Fixtures of the pipeline tests: the session's run of the paper's optimizer's two studies."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import with_checkpoints_of
from tests.reliability.cli_helpers import kedro_env, new_project, run_kedro

PIPELINES = "full_study,paper_optimizer_study,lr_sweep_study,optimizer_fidelity_study"


@pytest.fixture(scope="session")
def paper_optimizer_run(tmp_path_factory, finished_study) -> Path:
    """A project copy with `kedro run --env test --pipelines` :data:`PIPELINES` finished: the
    data, the paper-optimizer pair, the learning-rate sweep's models, the blog-optimizer pair
    (resumed from the session's finished study: the same outputs bit for bit) and every
    study's analysis and report, the optimizer_fidelity_study reading both pairs (one process
    for the studies of the paper's optimizer; tests/pipelines/test_lr_sweep_study.py reads the
    sweep)."""
    project = with_checkpoints_of(new_project(tmp_path_factory.mktemp("paper_optimizer")), finished_study)
    result = run_kedro(project, ["run", "--env", "test", "--pipelines", PIPELINES],
                       kedro_env(project), timeout_s=1500)
    assert result.returncode == 0, result.terminal[-4000:]
    return project
