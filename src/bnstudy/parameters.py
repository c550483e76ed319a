"""The study's parameters as pydantic models: checked as a whole before any node runs.

Kedro hands the pipeline a plain tree of parameters (conf/base, the environment, ``--params``).
:func:`validate_parameters` checks that tree against these models (``extra="forbid"``, strict
types) and the rules between sections (a batch larger than the training subset, a reported
layer the network does not have, ...). Each problem is a :class:`ParameterError` that names
the parameter by its full dotted path, its value and what is allowed. The models, with the
core's config dataclasses, are also the single source of docs/configuration.md
(:func:`configuration_reference`).
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, Strict

from bnstudy.core.config import (
    PRESETS,
    STRICT,
    ConfigError,
    Float,
    MeasurementConfig,
    ModelConfig,
    PositiveInt,
    TrainConfig,
    described,
)
from bnstudy.core.models import layer_names
from bnstudy.data.common import checked_md5
from bnstudy.reliability.errors import ParameterError

CIFAR10_SIZES = {"train": 50_000, "test": 10_000}
"""Images per split of CIFAR-10: no subset can be larger."""
SOURCES = ("download", "python_archive", "image_folder")
Str = Annotated[str, Strict()]
Names = Annotated[tuple[Str, ...], Strict(False)]
FIX = "Fix it in conf/<env>/ (globals.yml or parameters_*.yml) or in --params."


class Section(BaseModel):
    """A section of the parameters: unknown keys refused, no coercion between kinds."""

    model_config = ConfigDict(**STRICT, frozen=True)


class DataIngestion(Section):
    """``data_ingestion``: where CIFAR-10 comes from (parameters_data_ingestion.yml)."""

    source: described(Literal[SOURCES], (
        "`download` (the official archive, md5-checked), `python_archive` (a local copy at "
        "`path`) or `image_folder` (train/<class>/*, test/<class>/* at `path`).")) = "download"
    path: described(Str | None, "The local archive or folder of `python_archive` and `image_folder`.") = None
    url: described(Str, "Where `download` fetches the archive (env BNSTUDY_CIFAR10_URL).") = (
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz")
    md5: described(Any, (
        "The archive's md5 as a quoted string of 32 hex digits (env BNSTUDY_CIFAR10_MD5); "
        "null reads a local python_archive unchecked.")) = "c58f30108f718f92721af3b95e74349a"
    download_dir: described(Str, "Where downloads are cached.") = "data/01_raw"
    timeout_s: described(Annotated[Float, Field(gt=0)], "Network timeout of the download.") = 60
    classes: described(Names, "Class folders / label names in label order.") = (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    subset_only: described(Annotated[bool, Strict()], (
        "Keep (and decode) only the subset that `preprocessing` selects.")) = False

    @pydantic.field_validator("md5", mode="plain")
    @classmethod
    def _md5(cls, value: Any) -> str | None:
        return checked_md5(value)  # its ValueError names the parameter, the value and the fix


class Preprocessing(Section):
    """``preprocessing``: the class-stratified subsets and their seed."""

    train_size: described(Annotated[PositiveInt, Field(le=CIFAR10_SIZES["train"])] | None, (
        "Training images kept (a class-stratified subset); null keeps all 50,000.")) = None
    test_size: described(Annotated[PositiveInt, Field(le=CIFAR10_SIZES["test"])] | None, (
        "Test images kept; null keeps all 10,000.")) = None
    seed: described(Annotated[int, Strict()], "Picks the subsets.") = 0


class Analysis(Section):
    """``analysis``: how the traces are compared (parameters_analysis.yml)."""

    num_phases: described(PositiveInt, "Phases of training compared separately (thirds).") = 3
    smoothing_fraction: described(Annotated[Float, Field(gt=0, le=0.5)], (
        "Moving-average window of the training-loss curves, as a fraction of the steps.")) = 0.02


class Beyond(Section):
    """``beyond``: the beyond-the-paper study (parameters_beyond.yml)."""

    near_threshold: described(Annotated[Float, Field(gt=0, lt=1)], (
        "A curvature is 'at' a stability threshold when within this fraction of it.")) = 0.1


class Reporting(Section):
    """``reporting``: the report and its figures (parameters_reporting.yml)."""

    environment: described(Str, "The configuration environment, named in the report's Setup.") = "base"
    study_name: described(Str | None, (
        "The study's MLflow run name; null: `<env>-<YYYYmmdd-HHMMSS>` of the run.")) = None
    title: described(Str, "The report's title.") = (
        "How does batch normalization help optimization? A bnstudy report")
    ics_layers: described(Names, "Layers drawn in the gradient-ICS figure.") = (
        "conv_0", "conv_3", "conv_5", "conv_7", "conv_9")
    activation_layers: described(Names, "Layers drawn in the activation figures.") = tuple(
        f"conv_{i}" for i in range(10)) + ("fc1", "fc2")
    histogram_snapshots: described(PositiveInt, "Columns of the small-multiples figure.") = 6
    animation_fps: described(PositiveInt, "Frames per second of the activation animation.") = 4


class Mlflow(Section):
    """``<model>.mlflow``: what each model's MLflow run receives."""

    metric_stride: described(PositiveInt, "Each model's MLflow run gets every n-th step's metrics.") = 10


class Checkpoints(Section):
    """``<model>.checkpoints``: resumable training (docs/reliability.md)."""

    directory: described(Str | None, (
        "Checkpoint folder, per model and configuration hash; null turns checkpoints off.")) = (
        "data/06_models/checkpoints")
    every_s: described(Annotated[Float, Field(ge=0)], (
        "At most one save per this many seconds of wall time (and after the last chunk).")) = 60


SECTIONS: dict[str, type[Section]] = {
    "data_ingestion": DataIngestion, "preprocessing": Preprocessing, "analysis": Analysis,
    "reporting": Reporting, "beyond": Beyond,
}
MODEL_SECTIONS: dict[str, type[Section]] = {"mlflow": Mlflow, "checkpoints": Checkpoints}
MODEL_KEYS = frozenset({"normalization", "architecture", "training", "measurements"})
"""A top-level parameter with these keys is one model of the study (a training namespace)."""


@dataclasses.dataclass(frozen=True)
class ModelParameters:
    """One model's parameters, as the core's configs."""

    model: ModelConfig
    train: TrainConfig
    measurements: tuple[MeasurementConfig, ...]


def validate_parameters(params: Mapping[str, Any]) -> dict[str, ModelParameters]:
    """Check the whole parameter tree; return each model's configs.

    Raises:
        ParameterError: the first problem, naming the parameter's dotted path, its value and
        what is allowed.
    """
    sections = {name: _section(name, cls, params.get(name, {})) for name, cls in SECTIONS.items()}
    models = {}
    for name, values in params.items():
        if name in SECTIONS:
            continue
        if not isinstance(values, Mapping) or not MODEL_KEYS <= set(values):
            raise ParameterError(
                f"Unknown parameter section '{name}': expected one of {sorted(SECTIONS)} or a "
                f"model (a mapping with {sorted(MODEL_KEYS)}). {FIX}")
        models[name] = model_parameters(name, values)
    _check_across(sections, models)
    return models


def model_parameters(name: str, values: Mapping[str, Any]) -> ModelParameters:
    """One model's parameters (``<name>.normalization``, ``.architecture``, ...) as configs."""
    unknown = set(values) - MODEL_KEYS - set(MODEL_SECTIONS)
    if unknown:
        raise ParameterError(f"Unknown parameter(s) {sorted(f'{name}.{k}' for k in unknown)}; "
                             f"a model has {sorted(MODEL_KEYS | set(MODEL_SECTIONS))}. {FIX}")
    for key, cls in MODEL_SECTIONS.items():
        if key in values:
            _section(f"{name}.{key}", cls, values[key])
    architecture = values["architecture"]
    model = _config(ModelConfig, f"{name}.architecture",
                    {**architecture, "normalization": values["normalization"]}
                    if isinstance(architecture, Mapping) else architecture,
                    renamed={"normalization": f"{name}.normalization"})
    train = _config(TrainConfig, f"{name}.training", values["training"])
    measurements = values["measurements"]
    if not isinstance(measurements, (list, tuple)) or not measurements:
        raise ParameterError(f"Parameter {name}.measurements = {measurements!r}: expects a "
                             "non-empty list of presets (blog, paper) or protocol mappings. " + FIX)
    configs = tuple(
        _config(MeasurementConfig, f"{name}.measurements[{index}]",
                {"preset": item} if isinstance(item, str) else item)
        for index, item in enumerate(measurements))
    names = [config.name for config in configs]
    if len(set(names)) != len(names):
        raise ParameterError(f"Parameter {name}.measurements: the protocols need distinct names, "
                             f"got {names}. Give each a different `name`. {FIX}")
    return ModelParameters(model, train, configs)


def _config(cls: type, where: str, values: Any, renamed: Mapping[str, str] | None = None):
    try:
        return cls.from_dict(values)
    except ConfigError as error:
        if error.field is None:
            raise ParameterError(f"Parameters {where} are not valid: {error}. {FIX}") from None
        path = (renamed or {}).get(error.field, f"{where}.{error.field}") + error.item
        raise ParameterError(f"Parameter {path} = {error.value!r} ({type(error.value).__name__}): "
                             f"{error.reason}. {FIX}") from None


def _section(where: str, cls: type[Section], values: Any) -> Section:
    if not isinstance(values, Mapping):
        raise ParameterError(f"Parameter {where} = {values!r}: expects a mapping of "
                             f"{sorted(cls.model_fields)}. {FIX}")
    try:
        return cls.model_validate(dict(values))
    except pydantic.ValidationError as error:
        first = error.errors(include_url=False)[0]
        path = ".".join([where, *(str(part) for part in first["loc"])])
        if first["type"] == "extra_forbidden":
            raise ParameterError(f"Unknown parameter {path}; {where} has "
                                 f"{sorted(cls.model_fields)}. {FIX}") from None
        if first["type"] == "value_error":  # our own validators word the whole message
            raise ParameterError(str(first["ctx"]["error"])) from None
        value = first.get("input")
        message = first["msg"]
        if first["type"] == "literal_error":
            message = f"must be one of {list(typing.get_args(cls.model_fields[first['loc'][0]].annotation))}"
        raise ParameterError(f"Parameter {path} = {value!r} ({type(value).__name__}): "
                             f"{message}. {FIX}") from None


def _check_across(sections: Mapping[str, Section], models: Mapping[str, ModelParameters]) -> None:
    """Rules between sections: each names both parameters."""
    ingestion, preprocessing, reporting = (
        sections["data_ingestion"], sections["preprocessing"], sections["reporting"])
    train_size = preprocessing.train_size or CIFAR10_SIZES["train"]
    for name, model in models.items():
        if model.train.batch_size > train_size:
            raise ParameterError(
                f"Parameter {name}.training.batch_size = {model.train.batch_size} is larger than "
                f"preprocessing.train_size = {train_size}: not one batch fits. Lower the batch "
                f"size or raise the subset. {FIX}")
        if model.model.num_classes != len(ingestion.classes):
            raise ParameterError(
                f"Parameter {name}.architecture.num_classes = {model.model.num_classes}, but "
                f"data_ingestion.classes lists {len(ingestion.classes)} classes. {FIX}")
        layers = layer_names(model.model)
        for key in ("ics_layers", "activation_layers"):
            missing = [layer for layer in getattr(reporting, key) if layer not in layers]
            if missing:
                raise ParameterError(
                    f"Parameter reporting.{key} names {missing}, which model '{name}' does not "
                    f"have; its layers are {layers}. {FIX}")


# ------------------------------------------------------------------ configuration reference


def configuration_reference() -> str:
    """docs/configuration.md: every parameter with its type, default and meaning, generated
    from the models above and the core's configs."""
    parts = [
        "# Configuration reference\n",
        "Generated from the pydantic models (`bnstudy.parameters`, `bnstudy.core.config`) by "
        "`python -m bnstudy.parameters > docs/configuration.md`; a test keeps it current. "
        "Every parameter is checked before any node runs: unknown keys and wrong types are "
        "refused with the parameter's name, its value and what is allowed.\n",
        "The models `baseline` and `candidate` (parameters_training.yml), and the variants "
        "`candidate_noisy`, `candidate_l1`, `candidate_l2`, `candidate_linf` of the "
        "`beyond_study` pipeline (parameters_beyond.yml), each have "
        "`normalization` (ModelConfig), `architecture`, `training`, `measurements` (a list of "
        "presets `blog`/`paper` or mappings), `mlflow` and `checkpoints`; conf/base/globals.yml "
        "holds the values both share.\n",
    ]
    tables = [
        ("data_ingestion", DataIngestion), ("preprocessing", Preprocessing),
        ("analysis", Analysis), ("reporting", Reporting), ("beyond", Beyond),
        ("<model>.architecture (+ normalization)", ModelConfig),
        ("<model>.training", TrainConfig), ("<model>.measurements[i]", MeasurementConfig),
        ("<model>.mlflow", Mlflow), ("<model>.checkpoints", Checkpoints),
    ]
    for title, cls in tables:
        parts.append(f"## `{title}`\n\n{_first_line(cls.__doc__)}\n\n"
                     "| parameter | type | default | meaning |\n|---|---|---|---|")
        for name, info in _fields(cls):
            default = info.default
            shown = list(default) if isinstance(default, tuple) else default
            meaning = (info.description or "").replace("|", "\\|")
            parts.append(f"| `{name}` | {_type_name(info.annotation, info.metadata)} | "
                         f"`{_yaml(shown)}` | {meaning} |")
        parts.append("")
    parts.append("Measurement presets: " + ", ".join(
        f"`{name}` = {preset.to_dict()}" for name, preset in sorted(PRESETS.items())) + ".\n")
    return "\n".join(parts)


def _fields(cls: type) -> list[tuple[str, Any]]:
    fields = cls.__pydantic_fields__ if hasattr(cls, "__pydantic_fields__") else cls.model_fields
    return list(fields.items())


def _first_line(doc: str | None) -> str:
    return " ".join((doc or "").split("\n\n")[0].split())


_BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
_SIMPLE = {type(None): "null", Any: "str or null"}


def _type_name(annotation: Any, metadata: list[Any]) -> str:
    """A field's type for the reference: ``int (>= 1)``, ```none` | `batch```, ..."""
    bounds = [f"{symbol} {getattr(item, attr)}" for item in metadata for attr, symbol in _BOUNDS
              if getattr(item, attr, None) is not None]
    return _describe(annotation) + (f" ({', '.join(bounds)})" if bounds else "")


def _describe(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        text = " \\| ".join(f"`{a}`" for a in args)
    elif origin is Annotated:
        text = _type_name(args[0], list(args[1:]))
    elif origin in (typing.Union, types.UnionType):
        text = " or ".join(_describe(a) for a in args)
    elif origin is tuple:
        text = f"list of {_describe(args[0])}"
    else:
        text = _SIMPLE.get(annotation) or getattr(annotation, "__name__", str(annotation))
    return text


def _yaml(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


if __name__ == "__main__":
    sys.stdout.write(configuration_reference())
