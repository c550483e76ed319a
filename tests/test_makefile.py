"""The Makefile's study target: the command it runs (make -n prints it without running it)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def study_command(*variables: str) -> str:
    printed = subprocess.run(["make", "-n", "study", *variables], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, check=True).stdout
    return next(line for line in printed.splitlines() if "kedro run" in line)


def test_params_pass_through_to_kedro_run():
    command = study_command("ENV=test", "PIPELINE=data_ingestion", "PARAMS=a.b=1,c=2")

    assert command.endswith("kedro run --env test --pipelines data_ingestion --params 'a.b=1,c=2'")


def test_without_params_no_params_option_and_the_default_study():
    assert study_command().endswith("kedro run --env cpu --pipelines full_study")


def test_beyond_runs_the_study_and_the_variants_in_one_environment():
    printed = subprocess.run(["make", "-n", "beyond", "ENV=test"], cwd=PROJECT_ROOT,
                             capture_output=True, text=True, check=True).stdout
    command = next(line for line in printed.splitlines() if "kedro run" in line)
    assert command.endswith("kedro run --env test --pipelines full_study,beyond_study")
