"""A failing run's error is not buried under dependencies' deprecation notices (issue 24)."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

import pytest

from bnstudy.third_party_warnings import KnownDeprecations, hide_known_deprecations
from tests.conftest import make_project_copy

OMEGACONF = ("register_new_resolver() is deprecated and will be removed in a future release. "
             "Use register_resolver() instead.")


def _raised(message: str, module: str) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("always")
        hide_known_deprecations()
        warnings.warn_explicit(message, UserWarning, f"/x/{module.replace('.', '/')}.py", 7,
                               module=module)
    return caught


def test_a_known_notice_is_dropped_where_it_is_raised_and_only_there():
    assert _raised(OMEGACONF, "kedro.config.omegaconf_config") == []
    assert _raised(OMEGACONF, "kedro_mlflow.framework.hooks.mlflow_hook") == []
    assert len(_raised(OMEGACONF, "bnstudy.roster")) == 1  # the same words from our code
    assert len(_raised("something else", "kedro.config.omegaconf_config")) == 1


def _record(text: str) -> logging.LogRecord:
    return logging.LogRecord("py.warnings", logging.WARNING, "warnings.py", 109, text, None, None)


def test_mlflows_notice_is_dropped_from_the_warnings_logger():
    """MLflow raises it under its own simplefilter("once"), so only the logging route works."""
    drop = KnownDeprecations()
    mlflow = ("/venv/site-packages/mlflow/pyfunc/utils/data_validation.py:187: UserWarning: "
              "\x1b[33mAdd type hints to the `predict` method to enable data validation\x1b[0m")
    assert not drop.filter(_record(mlflow))
    assert drop.filter(_record(mlflow.replace("mlflow/pyfunc", "bnstudy/pyfunc")))
    assert drop.filter(_record("/src/bnstudy/roster.py:3: UserWarning: roster entry unused"))


@pytest.mark.slow  # a kedro subprocess (about 10 s)
def test_a_bad_parameter_is_the_first_thing_a_user_reads(tmp_path, monkeypatch):
    """``kedro run --env test --params training.batch_size=1000``: refused before any node,
    with no third-party warning in front of the message (before: 98 lines, 60-95 of them
    OmegaConf's and MLflow's notices)."""
    make_project_copy(tmp_path, monkeypatch)
    run = subprocess.run([sys.executable, "-m", "kedro", "run", "--env", "test", "--params",
                          "training.batch_size=1000"], check=False, capture_output=True, text=True,
                         timeout=300)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "UserWarning" not in output and "deprecated" not in output, output
    lines = output.splitlines()
    assert len(lines) < 25 and any(line.startswith("Error: Parameter training.batch_size")
                                   for line in lines), output
