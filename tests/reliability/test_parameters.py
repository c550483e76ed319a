"""Guarantee 3: the whole parameter tree is validated before any work, and each failure names
the parameter, its value and what is allowed (bnstudy.parameters)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from bnstudy.errors import ParameterError
from bnstudy.parameters import (
    CIFAR10_SIZES,
    DataIngestion,
    configuration_reference,
    validate_parameters,
)
from tests.conftest import PROJECT_ROOT

ZEROS = "0" * 32


def _load(env: str, runtime_params: dict[str, Any] | None = None) -> dict[str, Any]:
    from kedro.config import OmegaConfigLoader

    from bnstudy.config_loader import CONFIG_LOADER_ARGS

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
     r"unknown measurement preset 'papr'; choose from \['blog', 'paper', 'paper_dln', 'paper_momentum'\]"),
    ("duplicate protocol names", {"models": {"baseline": {"measurements": ["blog", "blog"]}}},
     r"models\.baseline\.measurements: the protocols need distinct names"),
    ("pool beyond the last conv", {"models": {"baseline": {"architecture": {"pool_after": [1, 4]}}}},
     r"pool_after must hold distinct conv indices in \[0, 3\].*got \[1, 4\]"),
    ("unknown normalization", {"models": {"candidate": {"normalization": "layer"}}},
     r"models\.candidate\.normalization = 'layer' \(str\): must be one of \['none', 'batch', 'batch_noisy', 'noisy', 'l1', 'l2', 'linf'\]"),
    ("classes and outputs differ", {"models": {"baseline": {"architecture": {"num_classes": 5}}}},
     r"models\.baseline\.architecture\.num_classes = 5, but data_ingestion\.classes lists 10"),
    ("train subset larger than the data", {"preprocessing": {"train_size": 60_000}},
     r"preprocessing\.train_size = 60000 \(int\): Input should be less than or equal to 50000"),
    ("test subset 0", {"preprocessing": {"test_size": 0}},
     r"preprocessing\.test_size = 0 \(int\): Input should be greater than or equal to 1"),
    ("train subset not an integer", {"preprocessing": {"train_size": 2.5}},
     r"preprocessing\.train_size = 2\.5 \(float\): Input should be a valid integer"),
    ("subset_only as text", {"data_ingestion": {"subset_only": "yes"}},
     r"data_ingestion\.subset_only = 'yes' \(str\): Input should be a valid boolean"),
    ("numeric md5", {"data_ingestion": {"md5": 0}},
     r"data_ingestion\.md5 must be a string of 32 hex digits, got 0 \(int\).*quote it"),
    ("empty md5", {"data_ingestion": {"md5": ""}},
     r"data_ingestion\.md5 must be 32 hex digits, got '' \(0 characters\)"),
    ("unknown source", {"data_ingestion": {"source": "ftp"}},
     r"data_ingestion\.source = 'ftp' \(str\): must be one of \['download', 'python_archive', 'image_folder'\]"),
    ("unknown ingestion key", {"data_ingestion": {"sorce": "download"}},
     r"Unknown parameter data_ingestion\.sorce|no parameter 'data_ingestion\.sorce'"),
    ("reported layer missing", {"reporting": {"ics_layers": ["conv_0", "conv_9"]}},
     r"reporting\.ics_layers names \['conv_9'\], which model '\w+' of \w+ does not have"),
    ("zero phases", {"analysis": {"num_phases": 0}},
     r"analysis\.num_phases = 0 \(int\): Input should be greater than or equal to 1"),
    ("metric stride 0", {"mlflow": {"metric_stride": 0}},
     r"mlflow\.metric_stride = 0 \(int\)"),
    ("moment set with l1", {"models": {"dln_l1": {"training": {"moment_set": True}}}},
     r"Parameter models\.dln_l1\.training\.moment_set = true cannot be used by model "
     r"'dln_l1': normalization 'l1' is not a function of the batch's mean and covariance"),
    ("moment set with minibatches", {"models": {"dln_candidate": {"training": {
        "batch_size": 50, "curvature_probe_size": 100}}}},
     r"models\.dln_candidate\.training\.moment_set = true cannot be used by model "
     r"'dln_candidate': it needs full-batch training, but batch_size is 50 of 100 samples"),
    ("moment set for a VGG", {"models": {"baseline": {"training": {"moment_set": True}}}},
     r"models\.baseline\.training\.moment_set = true cannot be used by model 'baseline': it "
     r"is for the deep linear network"),
    # shared settings are named as written, for every model
    ("shared lr as text", {"training": {"learning_rate": "oops"}},
     r"Parameter training\.learning_rate = 'oops' \(str\): expects int or float"),
    ("shared batch larger than the subset", {"training": {"batch_size": 1000,
                                                          "curvature_probe_size": 1000}},
     r"Parameter training\.batch_size = 1000 is larger than preprocessing\.train_size = 320"),
    # rules between sections that a node used to enforce (issue 20.10): refused before any
    # node, named as written, the first fix suggested one that works (see FIXES below)
    ("probe set larger than the subset", {"training": {"curvature_probe_size": 640}},
     r"Parameter training\.curvature_probe_size = 640 is larger than preprocessing\.train_size "
     r"= 320: the curvature probe set is drawn from the training subset\. Set it to a multiple "
     r"of training\.batch_size = 32 of at most 320, e\.g\. 320; or raise preprocessing\.train_size "
     r"to 640, or turn curvature off \(training\.curvature_every: null\)"),
    ("a model's probe set larger than the subset",
     {"models": {"baseline": {"training": {"curvature_probe_size": 640}}}},
     r"Parameter models\.baseline\.training\.curvature_probe_size = 640 is larger than "
     r"preprocessing\.train_size = 320: .* e\.g\. 320"),
    ("probe set not whole batches", {"training": {"curvature_probe_size": 50}},
     r"Parameter training\.curvature_probe_size = 50 is not a multiple of training\.batch_size "
     r"= 32: the curvature probe set is whole batches\. Set it to 32 or 64"),
    ("batch larger than the subset before the probe set", {"training": {"batch_size": 1000}},
     r"Parameter training\.batch_size = 1000 is larger than preprocessing\.train_size = 320: not "
     r"one batch fits\. Lower it to a divisor of training\.curvature_probe_size = 64 \(the "
     r"curvature probe set is whole batches\), e\.g\. 64\."),
    ("batch larger than the subset, curvature off",
     {"training": {"batch_size": 1000, "curvature_every": None}},
     r"Parameter training\.batch_size = 1000 is larger than preprocessing\.train_size = 320: not "
     r"one batch fits\. Lower it to at most 320, or raise preprocessing\.train_size to 1000\."),
    ("download without an md5", {"data_ingestion": {"source": "download", "md5": None}},
     r"Parameter data_ingestion\.md5 = null with data_ingestion\.source = 'download': a download "
     r"is always verified\. Give the archive's md5 .* or read a local copy"),
    ("local source without a path", {"data_ingestion": {"source": "image_folder", "path": None}},
     r"Parameter data_ingestion\.path = null with data_ingestion\.source = 'image_folder': .*"
     r"set data_ingestion\.path"),
    ("image size not CIFAR-10's", {"architecture": {"image_size": 64}},
     r"Parameter architecture\.image_size = 64, but CIFAR-10's images are 32x32 .* set it to 32"),
    ("image size not CIFAR-10's before the pools", {"models": {"candidate": {"architecture": {
        "image_size": 30}}}},
     r"Parameter models\.candidate\.architecture\.image_size = 30, but CIFAR-10's images are 32x32"),
    ("phases without names", {"analysis": {"num_phases": 4}},
     r"Parameter analysis\.num_phases = 4 \(int\): must be one of \[1, 2, 3\]"),
    ("compared models with other seeds", {"models": {"baseline": {"training": {"seeds": [1, 2]}}}},
     r"Parameters models\.baseline\.training\.seeds and training\.seeds give "
     r"studies\.full_study\.comparisons\[0\] the seeds \[1, 2\] for 'baseline' and "
     r"\[1337, 1, 2\] for 'candidate'"),
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
            "candidate_l1": "l1", "candidate_l2": "l2", "candidate_linf": "linf",
            "baseline_noisy": "noisy", "baseline_sgd": "none", "candidate_sgd": "batch",
            "dln_baseline": "none", "dln_candidate": "batch", "dln_l1": "l1", "dln_l2": "l2",
            "dln_linf": "linf", "baseline_sweep": "none", "candidate_sweep": "batch",
            "baseline_sweep_blog": "none", "candidate_sweep_blog": "batch"}
        # the deep linear network's models: one family and setup, their own normalization
        dln = [models[f"dln_{kind}"] for kind in ("baseline", "candidate", "l1", "l2", "linf")]
        assert {m.model.family for m in dln} == {"dln"} and models["baseline"].model.family == "vgg"
        assert all(dataclasses.replace(m.train, moment_set=True) == dln[0].train
                   and m.measurements == dln[0].measurements for m in dln)
        # on the moment set where that is exact (none, batch, l2), on the samples elsewhere
        assert [m.train.moment_set for m in dln] == [True, True, False, True, False]
        assert dln[0].train.batch_size == dln[0].train.curvature_probe_size  # the full batch
        # the variants share everything but the normalization with the pair
        for name in ("candidate_noisy", "candidate_l1", "candidate_l2", "candidate_linf",
                     "baseline_noisy"):
            assert models[name].train == models["candidate"].train == models["baseline"].train
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


# (a bad override, a regex whose group is the value the message suggests first, where that
# value goes): the first fix suggested works, it does not lead only to the next error.
FIXES = [
    ({"training": {"curvature_probe_size": 640}}, r"e\.g\. (\d+)", ("training", "curvature_probe_size")),
    ({"models": {"baseline": {"training": {"curvature_probe_size": 640}}}}, r"e\.g\. (\d+)",
     ("models", "baseline", "training", "curvature_probe_size")),
    ({"training": {"curvature_probe_size": 50}}, r"Set it to (\d+)", ("training", "curvature_probe_size")),
    ({"training": {"curvature_probe_size": 50}}, r"Set it to \d+ or (\d+)",
     ("training", "curvature_probe_size")),
    ({"training": {"batch_size": 1000}}, r"e\.g\. (\d+)", ("training", "batch_size")),
    ({"training": {"batch_size": 1000, "curvature_every": None}}, r"at most (\d+)",
     ("training", "batch_size")),
    ({"training": {"batch_size": 1000, "curvature_every": None}}, r"train_size to (\d+)",
     ("preprocessing", "train_size")),
    ({"training": {"curvature_probe_size": 640}}, r"train_size to (\d+)", ("preprocessing", "train_size")),
    ({"architecture": {"image_size": 64}}, r"set it to (\d+)", ("architecture", "image_size")),
]


@pytest.mark.parametrize(("override", "suggestion", "where"), FIXES)
def test_the_first_fix_a_message_suggests_works(test_params, override, suggestion, where):
    import re

    with pytest.raises(ParameterError) as raised:
        validate_parameters(_merged(test_params, override))
    value = int(re.search(suggestion, str(raised.value)).group(1))
    fix: dict[str, Any] = {where[-1]: value}
    for key in reversed(where[:-1]):
        fix = {key: fix}
    validate_parameters(_merged(_merged(test_params, override), fix))


def test_the_probe_set_is_checked_only_when_curvature_is_on(test_params):
    off = {"training": {"curvature_every": None}}
    for probe in (50, 640):
        models = validate_parameters(_merged(test_params, {"training": {
            **off["training"], "curvature_probe_size": probe}}))
        # every VGG (the DLN's models set their own: the full batch)
        assert {m.train.curvature_probe_size for m in models.values()
                if m.model.family == "vgg"} == {probe}


def test_a_runtime_override_of_one_model_leaves_the_other_alone():
    """``models.<name>.*`` overrides one model of the roster; a shared key, every model."""
    override = {"models": {"baseline": {"training": {"learning_rate": 1000.0}}}}
    models = validate_parameters(_load("test", override))
    assert models["baseline"].train.learning_rate == 1000.0
    assert models["candidate"].train.learning_rate == 0.035
    assert models["baseline"].train.seed_list == (1337, 1, 2)  # the rest still merged
    assert models["baseline"].train.batch_size == 32  # conf/test's value, not conf/base's
    shared = validate_parameters(_load("test", {"training": {"learning_rate": 0.1}}))
    # every model follows a shared key but those whose roster entry sets it (the blog grid)
    blog_grid = {"baseline_sweep_blog", "candidate_sweep_blog"}
    assert {m.train.learning_rate for n, m in shared.items() if n not in blog_grid} == {0.1}
    assert {shared[n].train.learning_rate for n in blog_grid} == {0.035}
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


def test_md5_given_as_text_is_kept_and_null_is_allowed(test_params):
    ingestion = test_params["data_ingestion"]
    assert DataIngestion(**{**ingestion, "md5": ZEROS.upper()}).md5 == ZEROS
    assert DataIngestion(**{**ingestion, "md5": None}).md5 is None


def test_configuration_reference_is_current_and_lists_every_parameter():
    """docs/configuration.md is generated from the models; regenerate it with
    `python -m bnstudy.parameters > docs/configuration.md`."""
    reference = configuration_reference()
    assert (PROJECT_ROOT / "docs" / "configuration.md").read_text() == reference
    for name in ("learning_rate", "measure_every", "probe_max", "train_size", "md5",
                 "metric_stride", "every_s", "ics_layers", "smoothing_fraction"):
        assert f"| `{name}` |" in reference


def _code_defaults(cls: type) -> dict[str, Any]:
    """A config class's fields that have a default in the code, with it."""
    import dataclasses

    from pydantic_core import PydanticUndefined

    fields = cls.__pydantic_fields__ if hasattr(cls, "__pydantic_fields__") else cls.model_fields
    return {name: info.default for name, info in fields.items()
            if info.default not in (PydanticUndefined, dataclasses.MISSING)}


def test_every_value_is_written_once():
    """docs/configuration.md, "Where each value is written": a section only the pipelines
    read has no default in the code and conf/base states every key of it; a core config holds
    its defaults and conf/base states only keys it sets otherwise (never one at its default).
    The roster's normalization is each model's own (RosterModel requires it)."""
    from bnstudy.core import MeasurementConfig, ModelConfig, TrainConfig
    from bnstudy.parameters import SECTIONS, Checkpoints, Mlflow, base_parameters

    base = {name: value for name, (value, _) in base_parameters().items()}
    for name, cls in {**SECTIONS, "mlflow": Mlflow, "checkpoints": Checkpoints}.items():
        assert _code_defaults(cls) == {}, f"{name}: a default in the code and in conf/base"
        assert set(base[name]) == set(cls.model_fields), f"conf/base states every {name} key"
    for name, cls in (("architecture", ModelConfig), ("training", TrainConfig)):
        defaults = _code_defaults(cls)
        assert set(defaults) == set(cls.__pydantic_fields__), f"{cls.__name__}: every field defaulted"
        restated = {key: value for key, value in base[name].items()
                    if defaults[key] == (tuple(value) if isinstance(value, list) else value)}
        assert restated == {}, f"conf/base restates the code's {name} defaults {restated}"
    assert base["architecture"] == {}  # the paper's network: ModelConfig's defaults
    measure_defaults = _code_defaults(MeasurementConfig)
    for item in base["measurements"]:
        restated = {key for key, value in item.items() if measure_defaults.get(key) == value}
        assert restated == set(), f"conf/base's measurements restate {restated}"


def test_the_reference_says_where_each_value_is_written():
    reference = configuration_reference()
    assert "**not stated**" not in reference  # a parameter neither conf/base nor the code sets
    assert ("| `learning_rate` | float (> 0) | `0.035` | code (`TrainConfig`) |" in reference)
    assert ("| `curvature_every` | int or null | `1000` | conf/base/globals.yml (over the "
            "code's `null`) |") in reference
    assert "| `metric_stride` | int (>= 1) | `10` | conf/base/globals.yml |" in reference
    assert "| `md5` | str or null | `${oc.env:BNSTUDY_CIFAR10_MD5," in reference


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
    assert _mlflow_runs(project_copy) == [], "refused before kedro-mlflow starts a run"


def _mlflow_runs(project: Path) -> list[Any]:
    """Every run (of any state, in any experiment) in the project's mlflow.db."""
    import mlflow
    from mlflow.entities import ViewType

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return list(client.search_runs(experiments, run_view_type=ViewType.ALL)) if experiments else []


def test_a_node_gets_the_sections_the_preflight_validated_not_a_second_check():
    """Issue 20: validation once. After validate_parameters, section_config hands the
    ingestion node the very objects the preflight built; without a preflight in the process
    it checks the values itself, with the preflight's message."""
    from bnstudy.parameters import section_config

    params = _load("test")
    validate_parameters(params)
    first = section_config("data_ingestion", params["data_ingestion"])
    assert section_config("data_ingestion", dict(params["data_ingestion"])) is first
    assert first.md5 == params["data_ingestion"]["md5"]
    bad = {**params["preprocessing"], "train_size": -3}
    with pytest.raises(ParameterError, match="preprocessing.train_size"):
        section_config("preprocessing", bad)
