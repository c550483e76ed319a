"""Guarantees 5 and 6: a user error prints one message and where the traceback went, not a
traceback; checksum values typed in ``--params`` stay strings."""

from __future__ import annotations

import re
from pathlib import Path

import click
import numpy as np
import pytest

from bnstudy.data import cifar10
from bnstudy.errors import ParameterError
from bnstudy.parameters import model_parameters
from bnstudy.reliability.errors import is_user_error
from bnstudy.reliability.params import check_overrides_exist, split_params_keeping_strings
from tests.reliability.cli_helpers import kedro_env, new_project, run_kedro

ZEROS = "0" * 32


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """One project for this module's short runs (each fails before it writes anything)."""
    return new_project(tmp_path_factory.mktemp("user_errors"))


def _traceback_file(stderr: str) -> Path:
    match = re.search(r"^The full traceback is in (.+)$", stderr, flags=re.MULTILINE)
    assert match, stderr
    return Path(match.group(1))


def _assert_concise(result, *names: str) -> str:
    """Exit 1, no traceback on the terminal, at most 3 lines besides log records (the error and
    where the traceback is), naming ``names``; returns the error line."""
    assert result.returncode == 1, result.terminal[-3000:]
    assert "Traceback" not in result.terminal and "╭" not in result.terminal
    lines = result.user_lines()
    assert len(lines) <= 3, lines
    assert lines[0].startswith("Error: ")
    assert lines[-1].startswith("The full traceback is in ")
    for name in names:
        assert name in lines[0]
    return lines[0]


@pytest.mark.slow
def test_bad_parameter_value_is_one_message_and_the_traceback_is_in_the_log(project):
    result = run_kedro(
        project, ["run", "--env", "test", "--params", "models.baseline.training.learning_rate=oops"],
        kedro_env(project), timeout_s=120,
    )

    error = _assert_concise(result, "models.baseline.training.learning_rate", "'oops'")
    assert "expects int or float" in error
    assert "Running node" not in result.stdout  # checked before any node ran
    log = _traceback_file(result.stderr).read_text()
    assert "Traceback (most recent call last)" in log
    assert "ParameterError: Parameter models.baseline.training.learning_rate = 'oops'" in log


@pytest.mark.slow
def test_unknown_parameter_key_names_the_key_and_the_likely_one(project):
    """A model's key written as before the roster (``baseline.training...``) names the
    roster's key for it."""
    result = run_kedro(
        project, ["run", "--env", "test", "--params", "baseline.training.learning_rate=0.1"],
        kedro_env(project), timeout_s=120,
    )

    error = _assert_concise(result, "baseline.training.learning_rate")
    assert "there is no parameter 'baseline'" in error
    assert "Did you mean models.baseline.training.learning_rate?" in error


@pytest.mark.slow
def test_md5_typed_on_the_command_line_is_checked_as_a_string(project, python_archive):
    """Kedro alone parses md5=000...0 as the integer 0 (and the check did not run)."""
    params = (
        f"data_ingestion.md5={ZEROS},data_ingestion.source=python_archive,"
        f"data_ingestion.path={python_archive}"
    )
    result = run_kedro(
        project, ["run", "--env", "test", "--pipelines", "data_ingestion", "--params", params],
        kedro_env(project), timeout_s=180,
    )

    actual = cifar10.file_md5(python_archive)
    error = _assert_concise(result, f"expected {ZEROS}", actual)
    assert "md5" in error


# ----------------------------------------------------------------------------- units


def _parse(text: str, ctx: click.Context | None = None):
    return split_params_keeping_strings(ctx, click.Option(["--params"]), text)


def _kedro_parse(text: str, ctx: click.Context | None = None):
    """Kedro's own ``kedro run --params`` parser, taken from its public ``run`` command."""
    from kedro.framework.cli.project import run

    callback = next(option.callback for option in run.params if option.name == "params")
    return callback(ctx, click.Option(["--params"]), text)


def test_kedro_alone_reads_a_zero_checksum_as_the_integer_zero():
    """The trap guarantee 6 closes (if Kedro changes this, the wrapper may go)."""
    assert _kedro_parse(f"d.md5={ZEROS}") == {"d": {"md5": 0}}


def test_params_parser_keeps_checksums_as_typed_and_parses_the_rest():
    parsed = _parse(f"data_ingestion.md5={ZEROS},a.b.archive_md5=1e5,x.lr=0.5,x.n=3")
    assert parsed == {
        "data_ingestion": {"md5": ZEROS},
        "a": {"b": {"archive_md5": "1e5"}},
        "x": {"lr": 0.5, "n": 3},
    }
    assert _parse("data_ingestion.md5=null") == {"data_ingestion": {"md5": None}}
    assert _parse("d.md5=~,e.md5= 00 ,f.md5='12'") == {"d": {"md5": None}, "e": {"md5": "00"}, "f": {"md5": "12"}}


@pytest.mark.parametrize("text", [
    "", "a.b=1,a.c=x,a.b=2", "x=1e-3, y = 3 ,z=[1],w=null,v=~", "a=1,a.b=2", "a.b=2,a=1",
    "url=http://host/?q=1", "s='quoted',t=true,k=", r"a\.b=1",
])
def test_params_parser_reads_everything_else_as_kedro_does(text):
    assert _parse(text) == _kedro_parse(text)


@pytest.mark.parametrize("text", ["a=1,no_value", " =3"])
def test_params_parser_fails_on_a_malformed_item_with_kedros_message(text):
    messages = []
    for parse in (_parse, _kedro_parse):
        with pytest.raises(click.UsageError) as error:
            parse(text, click.Context(click.Command("run")))
        messages.append(error.value.message)
    assert messages[0] == messages[1]
    assert messages[0].startswith("Invalid format of `params` option: ")


def test_unknown_override_keys_are_rejected_known_ones_pass():
    configured = {"baseline": {"training": {"learning_rate": 0.1}}, "free": None}
    check_overrides_exist(configured, {"baseline": {"training": {"learning_rate": 1}}})
    check_overrides_exist(configured, {"free": {"anything": 1}})  # a null parameter is free-form
    with pytest.raises(ParameterError, match=r"no parameter 'baseline.trainig'.*Did you mean"):
        check_overrides_exist(configured, {"baseline": {"trainig": {"learning_rate": 1}}})


@pytest.mark.parametrize(("models", "hint"), [
    (["a"], "Did you mean a.training.lr?"),
    (["b", "a"], "Did you mean a.training.lr or b.training.lr?"),
    (["a", "b", "c"], "Did you mean a.training.lr or b.training.lr? The same key is also under c."),
    (["d", "c", "b", "a"], "Did you mean a.training.lr or b.training.lr? The same key is also under c and d."),
    (["a", "b", "c", "d", "e"], "or b.training.lr? The same key is also under c, d and e."),
])
def test_a_key_missing_its_section_names_every_section_that_has_it(models, hint):
    configured = {model: {"training": {"lr": 0.1}} for model in models}
    with pytest.raises(ParameterError) as error:
        check_overrides_exist(configured, {"training": {"lr": 1}})
    assert str(error.value).endswith(hint)


def test_model_parameters_are_validated_with_their_full_name():
    model = {
        "normalization": "batch",
        "architecture": {"conv_features": [4], "pool_after": [0], "dense_features": [4]},
        "training": {"learning_rate": 0.1, "epochs": True},
        "measurements": ["blog"],
        "checkpoints": {"directory": None, "every_s": 60},
    }
    with pytest.raises(ParameterError, match=r"candidate\.training\.epochs = True \(bool\)"):
        model_parameters("candidate", model)
    model["training"]["epochs"] = 1
    model["training"]["learning_rate"] = -1.0
    with pytest.raises(ParameterError, match=r"candidate\.training\.learning_rate = -1\.0 .*must be > 0"):
        model_parameters("candidate", model)


def _raise(error: BaseException):
    raise error


def test_user_errors_are_told_apart_from_bugs():
    with pytest.raises(ValueError) as from_bnstudy:
        model_parameters("m", {"normalization": "x", "architecture": {}, "training": {},
                               "measurements": [], "checkpoints": {"directory": None, "every_s": 60}})
    with pytest.raises(ValueError) as from_numpy:
        np.zeros(3).reshape(2, 2)
    with pytest.raises(KeyError) as key_error:
        _raise(KeyError("x"))

    assert is_user_error(from_bnstudy.value)
    assert is_user_error(cifar10.Cifar10Error("bad archive"))
    assert not is_user_error(from_numpy.value)  # a ValueError, but not one of ours: a bug
    assert not is_user_error(key_error.value)


def test_params_may_set_a_key_conf_leaves_at_the_codes_default(monkeypatch):
    """conf/base writes no ``training.learning_rate`` (TrainConfig's default is the only copy),
    yet ``--params training.learning_rate=0.1`` names a known parameter; a typo still fails."""
    from types import SimpleNamespace

    from kedro.config import OmegaConfigLoader

    from bnstudy.config_loader import CONFIG_LOADER_ARGS
    from bnstudy.reliability.hooks import PreflightHooks
    from tests.conftest import PROJECT_ROOT

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # no server to probe

    def context(runtime_params):
        loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), runtime_params=runtime_params,
                                   **{**CONFIG_LOADER_ARGS, "default_run_env": "test"})
        return SimpleNamespace(config_loader=loader)

    PreflightHooks().after_context_created(context({
        "training": {"learning_rate": 0.1}, "architecture": {"noise_mean_range": 0.3},
        "models": {"baseline": {"training": {"momentum": 0.0}}}}))
    with pytest.raises(ParameterError, match=r"training\.lerning_rate.*Did you mean training\.learning_rate"):
        PreflightHooks().after_context_created(context({"training": {"lerning_rate": 0.1}}))
