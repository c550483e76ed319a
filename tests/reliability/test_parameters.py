"""Guarantee 3: the whole parameter tree is validated before any work, and each failure names
the parameter, its value and what is allowed (bnstudy.parameters)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from bnstudy.parameters import (
    CIFAR10_SIZES,
    DataIngestion,
    configuration_reference,
    validate_parameters,
)
from bnstudy.reliability.errors import ParameterError
from tests.conftest import PROJECT_ROOT

ZEROS = "0" * 32


def _load(env: str, runtime_params: dict[str, Any] | None = None) -> dict[str, Any]:
    from kedro.config import OmegaConfigLoader

    from bnstudy.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), runtime_params=runtime_params,
                                 **{**CONFIG_LOADER_ARGS, "default_run_env": env})
    return loader["parameters"]


@pytest.fixture(scope="module")
def test_params() -> dict[str, Any]:
    return _load("test")


def _merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in, as Kedro merges ``--params``."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


# (id, --params as a nested mapping, a regex the error must match: it names the parameter,
# its value and what is allowed). The test environment: 4 convs, 320 training images.
BAD_PARAMETERS = [
    ("lr as text", {"models": {"baseline": {"training": {"learning_rate": "oops"}}}},
     r"models\.baseline\.training\.learning_rate = 'oops' \(str\): expects int or float"),
    ("lr negative", {"models": {"candidate": {"training": {"learning_rate": -0.1}}}},
     r"models\.candidate\.training\.learning_rate = -0\.1 \(float\): must be > 0"),
    ("lr zero", {"models": {"baseline": {"training": {"learning_rate": 0}}}},
     r"models\.baseline\.training\.learning_rate = 0 \(int\): must be > 0"),
    ("batch size 0", {"models": {"baseline": {"training": {"batch_size": 0}}}},
     r"models\.baseline\.training\.batch_size = 0 \(int\): must be a positive integer"),
    ("batch larger than the subset", {"models": {"candidate": {"training": {
        "batch_size": 1000, "curvature_probe_size": 1000}}}},
     r"models\.candidate\.training\.batch_size = 1000 is larger than preprocessing\.train_size = 320"),
    ("epochs bool", {"models": {"baseline": {"training": {"epochs": True}}}},
     r"models\.baseline\.training\.epochs = True \(bool\): expects int"),
    ("momentum 1", {"models": {"baseline": {"training": {"momentum": 1.0}}}},
     r"models\.baseline\.training\.momentum = 1\.0 \(float\): must be < 1"),
    ("duplicate seeds", {"models": {"baseline": {"training": {"seeds": [1, 1]}}}},
     r"models\.baseline\.training are not valid: TrainConfig\.seeds must be distinct"),
    ("chunk does not divide eval", {"models": {"baseline": {"training": {"steps_per_chunk": 3}}}},
     r"steps_per_chunk \(3\) must divide eval_every \(10\)"),
    ("unknown training key", {"models": {"baseline": {"training": {"lerning_rate": 0.1}}}},
     r"unknown TrainConfig key\(s\) \['lerning_rate'\]|no parameter 'models\.baseline\.training\.lerning_rate'"),
    ("measure_every 0", {"models": {"candidate": {"measurements": [{"preset": "paper", "measure_every": 0}]}}},
     r"models\.candidate\.measurements\[0\]\.measure_every = 0 \(int\): must be a positive integer"),
    ("empty probe grid", {"models": {"baseline": {"measurements": [{"preset": "paper", "probe_max": 0.2}]}}},
     r"models\.baseline\.measurements\[0\] are not valid: .*probe range arange\(0\.5, 0\.2, 0\.3\) is empty"),
    ("no measurements", {"models": {"baseline": {"measurements": []}}},
     r"models\.baseline\.measurements = \[\]: expects a non-empty list"),
    ("unknown preset", {"models": {"baseline": {"measurements": ["papr"]}}},
     r"unknown measurement preset 'papr'; choose from \['blog', 'paper'\]"),
    ("duplicate protocol names", {"models": {"baseline": {"measurements": ["blog", "blog"]}}},
     r"models\.baseline\.measurements: the protocols need distinct names"),
    ("pool beyond the last conv", {"models": {"baseline": {"architecture": {"pool_after": [1, 4]}}}},
     r"pool_after must hold distinct conv indices in \[0, 3\].*got \[1, 4\]"),
    ("unknown normalization", {"models": {"candidate": {"normalization": "layer"}}},
     r"models\.candidate\.normalization = 'layer' \(str\): must be one of \['none', 'batch', 'batch_noisy', 'l1', 'l2', 'linf'\]"),
    ("classes and outputs differ", {"models": {"baseline": {"architecture": {"num_classes": 5}}}},
     r"models\.baseline\.architecture\.num_classes = 5, but data_ingestion\.classes lists 10"),
    ("train subset larger than the data", {"preprocessing": {"train_size": 60_000}},
     r"preprocessing\.train_size = 60000 \(int\): Input should be less than or equal to 50000"),
    ("test subset 0", {"preprocessing": {"test_size": 0}},
     r"preprocessing\.test_size = 0 \(int\): Input should be greater than or equal to 1"),
    ("numeric md5", {"data_ingestion": {"md5": 0}},
     r"data_ingestion\.md5 must be a string of 32 hex digits, got 0 \(int\).*quote it"),
    ("empty md5", {"data_ingestion": {"md5": ""}},
     r"data_ingestion\.md5 must be 32 hex digits, got '' \(0 characters\)"),
    ("unknown source", {"data_ingestion": {"source": "ftp"}},
     r"data_ingestion\.source = 'ftp' \(str\): must be one of \['download', 'python_archive', 'image_folder'\]"),
    ("unknown ingestion key", {"data_ingestion": {"sorce": "download"}},
     r"Unknown parameter data_ingestion\.sorce|no parameter 'data_ingestion\.sorce'"),
    ("reported layer missing", {"reporting": {"ics_layers": ["conv_0", "conv_9"]}},
     r"reporting\.ics_layers names \['conv_9'\], which model '\w+' does not have"),
    ("zero phases", {"analysis": {"num_phases": 0}},
     r"analysis\.num_phases = 0 \(int\): Input should be greater than or equal to 1"),
    ("metric stride 0", {"mlflow": {"metric_stride": 0}},
     r"mlflow\.metric_stride = 0 \(int\)"),
    # shared settings are named as written, for every model
    ("shared lr as text", {"training": {"learning_rate": "oops"}},
     r"Parameter training\.learning_rate = 'oops' \(str\): expects int or float"),
    ("shared batch larger than the subset", {"training": {"batch_size": 1000,
                                                          "curvature_probe_size": 1000}},
     r"Parameter training\.batch_size = 1000 is larger than preprocessing\.train_size = 320"),
]
# The roster's own rules (checked by validate_parameters; `--params` cannot add a model, so
# these are not run through a session below).
ROSTER_PARAMETERS = [
    ("study names a model not in the roster", {"studies": {"full_study": {"models": ["baseline", "nobody"]}}},
     r"studies\.full_study\.models names 'nobody', which is not in models"),
    ("comparison with a model outside the study", {"studies": {"full_study": {
        "comparisons": [{"reference": "baseline", "treatment": "candidate_l1"}]}}},
     r"studies\.full_study\.comparisons\[0\]\.treatment = 'candidate_l1': the study has the models \['baseline', 'candidate'\]"),
    ("model without a normalization", {"models": {"extra": {"training": {"learning_rate": 0.1}}}},
     r"models\.extra\.normalization"),
    ("model name not a namespace", {"models": {"Extra-1": {"normalization": "batch"}}},
     r"models\.Extra-1: a name is lower-case letters"),
]
IDS = [case[0] for case in BAD_PARAMETERS]
ALL_BAD = BAD_PARAMETERS + ROSTER_PARAMETERS


def test_the_shipped_environments_are_valid():
    for env in ("local", "cpu", "test"):
        models = validate_parameters(_load(env))
        assert {name: m.model.normalization for name, m in models.items()} == {
            "baseline": "none", "candidate": "batch", "candidate_noisy": "batch_noisy",
            "candidate_l1": "l1", "candidate_l2": "l2", "candidate_linf": "linf"}
        # the variants share everything but the normalization with the candidate
        for name in ("candidate_noisy", "candidate_l1", "candidate_l2", "candidate_linf"):
            assert models[name].train == models["candidate"].train
            assert models[name].measurements == models["candidate"].measurements
    assert validate_parameters(_load("cpu"))["baseline"].train.seed_list == (1337, 1, 2)


@pytest.mark.parametrize(("name", "override", "message"), ALL_BAD, ids=[c[0] for c in ALL_BAD])
def test_bad_parameters_fail_with_a_message_naming_them(test_params, name, override, message):
    assert len(BAD_PARAMETERS) >= 15
    with pytest.raises(ParameterError, match=message) as raised:
        validate_parameters(_merged(test_params, override))
    text = str(raised.value)
    assert "conf/<env>" in text and ("--params" in text or "BNSTUDY_CIFAR10_MD5" in text), \
        "the message says where to fix it"
    assert "\n" not in text and len(text) < 700, "one short message"


def test_a_runtime_override_of_one_model_leaves_the_other_alone():
    """``models.<name>.*`` overrides one model of the roster; a shared key, every model."""
    override = {"models": {"baseline": {"training": {"learning_rate": 1000.0}}}}
    models = validate_parameters(_load("test", override))
    assert models["baseline"].train.learning_rate == 1000.0
    assert models["candidate"].train.learning_rate == 0.035
    assert models["baseline"].train.seed_list == (1337, 1, 2)  # the rest still merged
    assert models["baseline"].train.batch_size == 32  # conf/test's value, not conf/base's
    shared = validate_parameters(_load("test", {"training": {"learning_rate": 0.1}}))
    assert {m.train.learning_rate for m in shared.values()} == {0.1}
    assert shared["candidate"].train.seed_list == (1337, 1, 2)
    assert _load("test", {"preprocessing": {"train_size": 100}})["preprocessing"] == {
        "train_size": 100, "test_size": 100, "seed": 0}


def test_a_roster_override_is_merged_key_by_key():
    from bnstudy.roster import model_settings

    params = _load("test")
    entry = {"normalization": "batch", "training": {"momentum": 0.0},
             "architecture": {"dense_features": [4, 4]}, "measurements": ["paper"]}
    settings = model_settings(params, entry)
    assert settings["training"] == {**params["training"], "momentum": 0.0}
    assert settings["architecture"] == {**params["architecture"], "dense_features": [4, 4]}
    assert settings["measurements"] == ["paper"]  # a list is replaced, not merged
    assert settings["checkpoints"] == params["checkpoints"]


def test_the_subset_limits_are_cifar10s():
    assert CIFAR10_SIZES == {"train": 50_000, "test": 10_000}


def test_md5_given_as_text_is_kept_and_null_is_allowed():
    assert DataIngestion(md5=ZEROS.upper()).md5 == ZEROS
    assert DataIngestion(md5=None).md5 is None


def test_configuration_reference_is_current_and_lists_every_parameter():
    """docs/configuration.md is generated from the models; regenerate it with
    `python -m bnstudy.parameters > docs/configuration.md`."""
    reference = configuration_reference()
    assert (PROJECT_ROOT / "docs" / "configuration.md").read_text() == reference
    for name in ("learning_rate", "measure_every", "probe_max", "train_size", "md5",
                 "metric_stride", "every_s", "ics_layers", "smoothing_fraction"):
        assert f"| `{name}` |" in reference


def test_the_base_configuration_states_the_models_defaults():
    """conf/base and the models agree, so the reference's defaults are what a run uses."""
    from bnstudy.parameters import SECTIONS

    base = _load("local")
    for name, cls in SECTIONS.items():
        declared = {key: list(v) if isinstance(v, tuple) else v
                    for key, v in cls().model_dump().items()}
        configured = {key: value for key, value in base[name].items()
                      if key not in ("source", "path", "url", "md5")}  # set from the environment
        assert configured == {k: declared[k] for k in configured}, name


@pytest.mark.slow
@pytest.mark.parametrize(("name", "override", "message"), BAD_PARAMETERS, ids=IDS)
def test_kedro_run_refuses_bad_parameters_before_any_node(project_copy: Path, monkeypatch, name,
                                                          override, message):
    """The same table through a real KedroSession: the error comes before the first node."""
    from kedro.pipeline.node import Node

    from tests.conftest import run_session

    started: list[str] = []
    run = Node.run

    def spy(node: Node, *args: Any, **kwargs: Any) -> Any:
        started.append(node.name)
        return run(node, *args, **kwargs)

    monkeypatch.setattr(Node, "run", spy)
    with pytest.raises(ParameterError, match=message):
        run_session(project_copy, "full_study", params=override)
    assert started == []
    assert not any(path.is_file() for path in (project_copy / "data").rglob("*"))
