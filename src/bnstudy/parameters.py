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
import json
import re
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, Strict
from pydantic_core import PydanticUndefined

from bnstudy.analysis.tables import PHASE_NAMES
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
from bnstudy.core.moments import moment_set_problem
from bnstudy.data.common import IMAGE_SHAPE, checked_md5
from bnstudy.errors import ParameterError
from bnstudy.roster import SHARED_SECTIONS, Roster, model_settings, roster_from_parameters

CIFAR10_SIZES = {"train": 50_000, "test": 10_000}
"""Images per split of CIFAR-10: no subset can be larger."""
SOURCES = ("download", "python_archive", "image_folder")
Str = Annotated[str, Strict()]
Names = Annotated[tuple[Str, ...], Strict(False)]
FIX = "Fix it in conf/<env>/ (globals.yml or parameters_*.yml) or in --params."
MODEL_KEYS = frozenset({"normalization", "architecture", "training", "measurements",
                        "checkpoints"})
"""What :func:`model_parameters` reads of a model."""


class Section(BaseModel):
    """A section of the parameters: unknown keys refused, no coercion between kinds."""

    model_config = ConfigDict(**STRICT, frozen=True)


class DataIngestion(Section):
    """``data_ingestion``: where CIFAR-10 comes from (parameters_data_ingestion.yml)."""

    source: described(Literal[SOURCES], (
        "`download` (the official archive, md5-checked), `python_archive` (a local copy at "
        "`path`) or `image_folder` (train/<class>/*, test/<class>/* at `path`)."))
    path: described(Str | None, "The local archive or folder of `python_archive` and `image_folder`.")
    url: described(Str, "Where `download` fetches the archive (env BNSTUDY_CIFAR10_URL).")
    md5: described(Any, (
        "The archive's md5 as a quoted string of 32 hex digits (env BNSTUDY_CIFAR10_MD5); "
        "null reads a local python_archive unchecked."))
    download_dir: described(Str, "Where downloads are cached.")
    timeout_s: described(Annotated[Float, Field(gt=0)], "Network timeout of the download.")
    classes: described(Names, "Class folders / label names in label order.")
    subset_only: described(Annotated[bool, Strict()], (
        "Keep (and decode) only the subset that `preprocessing` selects."))

    @pydantic.field_validator("md5", mode="plain")
    @classmethod
    def _md5(cls, value: Any) -> str | None:
        return checked_md5(value)  # its ValueError names the parameter, the value and the fix


class Preprocessing(Section):
    """``preprocessing``: the class-stratified subsets and their seed."""

    train_size: described(Annotated[PositiveInt, Field(le=CIFAR10_SIZES["train"])] | None, (
        "Training images kept (a class-stratified subset); null keeps all 50,000."))
    test_size: described(Annotated[PositiveInt, Field(le=CIFAR10_SIZES["test"])] | None, (
        "Test images kept; null keeps all 10,000."))
    seed: described(Annotated[int, Strict()], "Picks the subsets.")


class LinearData(Section):
    """``linear_data``: the deep linear network's synthetic regression (parameters_dln.yml):
    x ~ N(0, I) and y = A x, A with i.i.d. N(0, 1) entries, all from ``seed``."""

    seed: described(Annotated[int, Strict()], "Draws A, then the training, then the test samples.")
    num_train: described(PositiveInt, "Training samples (full-batch gradient descent: all of them each step).")
    num_test: described(Annotated[int, Strict(), Field(ge=0)], "Held-out samples of the test loss.")
    dimension: described(PositiveInt, "Dimension d of x and y (the network's width).")


class Analysis(Section):
    """``analysis``: how the traces are compared (parameters_analysis.yml)."""

    num_phases: described(PositiveInt, "Phases of training compared separately (thirds).")
    smoothing_fraction: described(Annotated[Float, Field(gt=0, le=0.5)], (
        "Moving-average window of the training-loss curves, as a fraction of the steps."))

    @pydantic.field_validator("num_phases")
    @classmethod
    def _named_phases(cls, value: int) -> int:
        # the analysis names each phase (bnstudy.analysis.tables.phase_labels): checked here,
        # not after training
        if value not in PHASE_NAMES:
            named = "; ".join(f"{n}: {', '.join(names)}" for n, names in PHASE_NAMES.items())
            raise ValueError(f"Parameter analysis.num_phases = {value} (int): must be one of "
                             f"{sorted(PHASE_NAMES)}, the phases the analysis has names for "
                             f"({named}). {FIX}")
        return value


class Beyond(Section):
    """``beyond``: the beyond-the-paper study (parameters_beyond.yml)."""

    near_threshold: described(Annotated[Float, Field(gt=0, lt=1)], (
        "A curvature is 'at' a stability threshold when within this fraction of it."))


class Sweep(Section):
    """``sweep``: the learning-rate sweep of ``lr_sweep_study`` (parameters_sweep.yml)."""

    final_fraction: described(Annotated[Float, Field(gt=0, le=0.5)], (
        "A run's final training loss: the mean batch loss over this last fraction of its steps "
        "(its first training loss: over the same first fraction)."))
    curve_rates: described(Annotated[tuple[Annotated[Float, Field(gt=0)], ...], Strict(False)], (
        "The learning rates whose training and test curves the report draws (the paper's Fig 1: "
        "0.1 and 0.5); a rate the sweep lacks is named in the figure, not drawn."))
    ics_rates: described(Annotated[tuple[Annotated[Float, Field(gt=0)], ...], Strict(False)], (
        "The learning rates whose gradient ICS the report draws (the paper's Fig 3: 0.1 and "
        "0.01), from the sweep's measured steps."))


class Reporting(Section):
    """``reporting``: the report and its figures (parameters_reporting.yml)."""

    environment: described(Str, "The configuration environment, named in the report's Setup.")
    study_name: described(Str | None, (
        "The study's MLflow run name; null: `<env>-<YYYYmmdd-HHMMSS>` of the run."))
    title: described(Str, "The report's title.")
    ics_layers: described(Names, "Layers drawn in the gradient-ICS figure.")
    activation_layers: described(Names, "Layers drawn in the activation figures.")
    histogram_layers: described(Names | None, (
        "Rows of the report's histogram grid; null: 4 layers evenly spaced through "
        "activation_layers."))
    histogram_snapshots: described(PositiveInt, (
        "Columns of the report's histogram grid: snapshots evenly spaced in steps."))
    full_histogram_snapshots: described(PositiveInt, (
        "Columns of the full grid (every layer of activation_layers), "
        "the figure activation_histograms_full (data/08_reporting/figures/), not in the report."))
    animation_fps: described(PositiveInt, "Frames per second of the activation animation.")


class Mlflow(Section):
    """``mlflow``: what each model's MLflow run receives."""

    metric_stride: described(PositiveInt, "Each model's MLflow run gets every n-th step's metrics.")


class Checkpoints(Section):
    """``checkpoints``: resumable training (docs/reliability.md)."""

    directory: described(Str | None, (
        "Checkpoint folder, per model and configuration hash; null turns checkpoints off."))
    every_s: described(Annotated[Float, Field(ge=0)], (
        "At most one save per this many seconds of wall time (and after the last chunk)."))


class ImportedRuns(Section):
    """``imported_runs``: models trained elsewhere (``benchmarks/paper_run.py --out``, e.g. on a
    GPU machine), read instead of trained (docs/scaling.md, "GPU runs as studies")."""

    path: described(Str | None, (
        "Folder that benchmarks/paper_run.py --out wrote (one sub-folder per model): each "
        "model of the run reads the results saved there with its own configuration and data "
        "instead of training (an error names the first difference when none matches). null: "
        "every model trains here."))


SECTIONS: dict[str, type[Section]] = {
    "data_ingestion": DataIngestion, "preprocessing": Preprocessing,
    "linear_data": LinearData, "analysis": Analysis,
    "reporting": Reporting, "beyond": Beyond, "sweep": Sweep, "mlflow": Mlflow,
    "imported_runs": ImportedRuns,
}
ROSTER_SECTIONS = frozenset({"models", "studies"})
CODE_DEFAULTS: dict[str, dict[str, Any]] = {
    "architecture": {field.name: field.default for field in dataclasses.fields(ModelConfig)
                     if field.name != "normalization"},  # a model's: its roster entry, always
    "training": {field.name: field.default for field in dataclasses.fields(TrainConfig)},
}
"""The shared sections whose defaults are in the code (the core's configs: docs/configuration.md,
"Where each value is written"): conf/ states only the keys a study sets otherwise."""


def with_code_defaults(tree: Mapping[str, Any]) -> dict[str, Any]:
    """``tree`` (the parameters, or one model's settings) with every parameter it does not
    state at its code default (:data:`CODE_DEFAULTS`): what the run uses, complete, for the
    run record and for the check that ``--params`` names a known key."""
    filled = dict(tree)
    for section, defaults in CODE_DEFAULTS.items():
        if isinstance(tree.get(section), Mapping):
            filled[section] = {**defaults, **tree[section]}
    return filled


@dataclasses.dataclass(frozen=True)
class ModelParameters:
    """One model's parameters, as the core's configs and its checkpoint settings."""

    model: ModelConfig
    train: TrainConfig
    measurements: tuple[MeasurementConfig, ...]
    checkpoints: Checkpoints


def validate_parameters(params: Mapping[str, Any]) -> dict[str, ModelParameters]:
    """Check the whole parameter tree; return the configs of each model of the roster.

    The shared sections are checked as written (a bad ``training.learning_rate`` is named so),
    then each model's settings with its roster overrides merged in (``models.<name>.*``).

    Raises:
        ParameterError: the first problem, naming the parameter's dotted path, its value and
        what is allowed.
    """
    known = set(SECTIONS) | set(SHARED_SECTIONS) | ROSTER_SECTIONS
    for name in params:
        if name not in known:
            raise ParameterError(
                f"Unknown parameter section '{name}': expected one of {sorted(known)}. A model "
                f"is an entry of `models` (parameters_roster.yml). {FIX}")
    sections = {name: _section(name, cls, params.get(name)) for name, cls in SECTIONS.items()}
    roster = roster_from_parameters(params)
    _check_sizes(params, sections, roster)
    first = next(iter(roster.models))
    model_parameters("", model_settings(params, {"normalization": roster.normalization(first)}))
    models = {name: model_parameters(f"models.{name}", model_settings(params, params["models"][name]))
              for name in roster.models}
    _check_across(params, sections, roster, models)
    _check_moment_sets(params, sections["linear_data"].num_train, models)
    return models


def _check_moment_sets(params: Mapping[str, Any], num_train: int,
                       models: Mapping[str, ModelParameters]) -> None:
    """A model that trains on its data's moment set (``training.moment_set``) must be one
    whose loss depends on the data through its moments only (:mod:`bnstudy.core.moments`)."""
    for name, configs in models.items():
        train, model = configs.train, configs.model
        if not train.moment_set:
            continue
        problem = moment_set_problem(
            model.family, model.normalization, train.batch_size, num_train,
            None if train.curvature_every is None else train.curvature_probe_size)
        if problem is not None:
            raise ParameterError(
                f"Parameter {parameter_path(params, name, 'training', 'moment_set')} = true "
                f"cannot be used by model {name!r}: {problem}. {FIX}")


_BUILT: dict[str, ModelParameters] = {}
"""The configs :func:`model_parameters` has built, by the settings they were built from."""


def model_configs(settings: Mapping[str, Any]) -> ModelParameters:
    """The typed configs of one model's settings (:func:`bnstudy.roster.model_settings`), for
    the training node: those :func:`validate_parameters` built from the same settings before
    the first node, looked up and not checked again. Only a call without that check in this
    process (a notebook or a test calling the node directly) builds, and so checks, them here,
    once; errors then name the shared sections (``training.batch_size``)."""
    return _BUILT.get(_settings_key(settings)) or model_parameters("", settings)


def _settings_key(settings: Mapping[str, Any]) -> str:
    # JSON tells 1 from 1.0 and from true, as the strict configs do; tuples read as lists
    return json.dumps(settings, sort_keys=True, default=repr)


def model_parameters(name: str, values: Mapping[str, Any]) -> ModelParameters:
    """One model's parameters (``normalization``, ``architecture``, ``training``,
    ``measurements``, ``checkpoints``) as configs; errors name ``<name>.<key>`` (the shared
    sections' own names when ``name`` is empty). What it builds, :func:`model_configs` finds."""
    prefix = f"{name}." if name else ""
    unknown = set(values) - MODEL_KEYS
    if unknown:
        raise ParameterError(f"Unknown parameter(s) {sorted(prefix + k for k in unknown)}; "
                             f"a model has {sorted(MODEL_KEYS)}. {FIX}")
    checkpoints = _section(f"{prefix}checkpoints", Checkpoints, values.get("checkpoints"))
    architecture = values["architecture"]
    model = _config(ModelConfig, f"{prefix}architecture",
                    {**architecture, "normalization": values["normalization"]}
                    if isinstance(architecture, Mapping) else architecture,
                    renamed={"normalization": f"{prefix}normalization"})
    train = _config(TrainConfig, f"{prefix}training", values["training"])
    measurements = values["measurements"]
    if not isinstance(measurements, (list, tuple)) or not measurements:
        raise ParameterError(f"Parameter {prefix}measurements = {measurements!r}: expects a "
                             "non-empty list of presets (blog, paper) or protocol mappings. " + FIX)
    configs = tuple(
        _config(MeasurementConfig, f"{prefix}measurements[{index}]",
                {"preset": item} if isinstance(item, str) else item)
        for index, item in enumerate(measurements))
    names = [config.name for config in configs]
    if len(set(names)) != len(names):
        raise ParameterError(f"Parameter {prefix}measurements: the protocols need distinct names, "
                             f"got {names}. Give each a different `name`. {FIX}")
    built = ModelParameters(model, train, configs, checkpoints)
    _BUILT[_settings_key(values)] = built
    return built


def _config(cls: type, where: str, values: Any, renamed: Mapping[str, str] | None = None):
    try:
        return cls.from_dict(values)
    except ConfigError as error:
        if error.field is None:
            raise ParameterError(f"Parameters {where} are not valid: {error}. {FIX}") from None
        path = (renamed or {}).get(error.field, f"{where}.{error.field}") + error.item
        raise ParameterError(f"Parameter {path} = {error.value!r} ({type(error.value).__name__}): "
                             f"{error.reason}. {FIX}") from None


def section_config(name: str, values: Mapping[str, Any]) -> Section:
    """The typed config of the section ``name`` (``data_ingestion``, ``preprocessing``, ...)
    for a node: the one :func:`validate_parameters` built from the same values before the
    first node, looked up and not checked again (as :func:`model_configs` does for models);
    built, and so checked, here only when no such check ran in this process."""
    built = _SECTIONS_BUILT.get((name, _settings_key(values)))
    return built if built is not None else _section(name, SECTIONS[name], values)


_SECTIONS_BUILT: dict[tuple[str, str], Section] = {}
"""The sections :func:`_section` has validated, by name and the values they came from."""


def _section(where: str, cls: type[Section], values: Any) -> Section:
    built = _checked_section(where, cls, values)
    _SECTIONS_BUILT[(where, _settings_key(values))] = built
    return built


def _checked_section(where: str, cls: type[Section], values: Any) -> Section:
    if values is None:
        raise ParameterError(f"Parameter section {where} is missing: it has {sorted(cls.model_fields)}, "
                             f"none with a default (conf/base states them; docs/configuration.md). {FIX}")
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
        if first["type"] == "missing":
            raise ParameterError(f"Parameter {path} is missing: it has no default (conf/base "
                                 f"states it; docs/configuration.md). {FIX}") from None
        if first["type"] == "value_error":  # our own validators word the whole message
            raise ParameterError(str(first["ctx"]["error"])) from None
        value = first.get("input")
        message = first["msg"]
        if first["type"] == "literal_error":
            message = f"must be one of {list(typing.get_args(cls.model_fields[first['loc'][0]].annotation))}"
        raise ParameterError(f"Parameter {path} = {value!r} ({type(value).__name__}): "
                             f"{message}. {FIX}") from None


def parameter_path(params: Mapping[str, Any], model: str, section: str, key: str) -> str:
    """Where a model's ``section.key`` is set, as the user would write it: the roster entry's
    override (``models.<model>.training.batch_size``) when it has one, else the shared
    section (``training.batch_size``)."""
    entry = (params.get("models") or {}).get(model) or {}
    overridden = isinstance(entry.get(section), Mapping) and key in entry[section]
    return f"models.{model}.{section}.{key}" if overridden else f"{section}.{key}"


def _count(value: Any) -> int | None:
    """``value`` when it is a positive integer as written, else None (the configs name it)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def _check_sizes(params: Mapping[str, Any], sections: Mapping[str, Section], roster: Roster) -> None:
    """Rules between the data and a model's sizes, on each model's merged values as written,
    before its configs are built: a config's own rule would otherwise speak first, with a fix
    that cannot work (a batch of 1000 of 320 images: "make curvature_probe_size a multiple of
    1000"). The order is the order of the fixes: the batch fits the subset, then the
    curvature probe set (whole batches, drawn from the subset), then the image shape. A value
    of the wrong kind is left to the configs, which refuse it by name. The shared sections
    come first (as :func:`validate_parameters` checks them), then each model."""
    cifar_size = sections["preprocessing"].train_size or CIFAR10_SIZES["train"]
    for name in ("", *roster.models):  # "": no roster entry, the shared sections as written
        settings = with_code_defaults(model_settings(params, params["models"][name] if name else {}))
        training, architecture = settings["training"], settings["architecture"]
        dln = isinstance(architecture, Mapping) and architecture.get("family") == "dln"
        if isinstance(training, Mapping):
            _check_batches(params, name, training, sections["linear_data"].num_train if dln
                           else cifar_size, "linear_data.num_train" if dln
                           else "preprocessing.train_size")
        if isinstance(architecture, Mapping) and not dln:
            for key, expected in (("image_size", IMAGE_SHAPE[0]), ("in_channels", IMAGE_SHAPE[2])):
                value = architecture[key]
                if _count(value) is not None and value != expected:
                    raise ParameterError(
                        f"Parameter {parameter_path(params, name, 'architecture', key)} = {value}, "
                        f"but CIFAR-10's images are {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]} with "
                        f"{IMAGE_SHAPE[2]} channels (every data_ingestion.source reads them so): "
                        f"set it to {expected}. {FIX}")


def _check_batches(params: Mapping[str, Any], name: str, training: Mapping[str, Any],
                   train_size: int, size_path: str = "preprocessing.train_size") -> None:
    """``batch_size`` against the training subset, then ``curvature_probe_size`` (when
    ``curvature_every`` is set) against both: the probe set is the first
    ``curvature_probe_size`` examples of the subset (:func:`bnstudy.core.curvature.probe_set`)
    in whole batches (``TrainConfig``), so it is a multiple of the batch of at most the
    subset (``size_path``: the parameter of the training set's size, CIFAR-10's subset or
    the linear regression's samples)."""
    batch_path = parameter_path(params, name, "training", "batch_size")
    probe_path = parameter_path(params, name, "training", "curvature_probe_size")
    batch = _count(training.get("batch_size"))
    probe = _count(training.get("curvature_probe_size"))
    curvature = _count(training.get("curvature_every")) is not None and probe is not None
    if batch is None:
        return
    if batch > train_size:
        if not curvature:
            fix = f"Lower it to at most {train_size}" + (
                f", or raise {size_path} to {batch}"
                if batch <= CIFAR10_SIZES["train"] else "")
        elif probe <= train_size:  # a larger subset would still leave the probe set < 1 batch
            fix = (f"Lower it to a divisor of {probe_path} = {probe} (the curvature probe set is "
                   f"whole batches), e.g. {probe}")
        else:
            fix = (f"Lower it to at most {train_size}, and {probe_path} = {probe} (also larger "
                   f"than the subset) to a multiple of it of at most {train_size}")
        raise ParameterError(
            f"Parameter {batch_path} = {batch} is larger than {size_path} = "
            f"{train_size}: not one batch fits. {fix}. {FIX}")
    if not curvature or (probe <= train_size and probe % batch == 0):
        return
    largest = train_size // batch * batch  # the largest probe set that fits: >= one batch
    off = f", or turn curvature off ({parameter_path(params, name, 'training', 'curvature_every')}: null)"
    if probe > train_size:
        raise ParameterError(
            f"Parameter {probe_path} = {probe} is larger than {size_path} = "
            f"{train_size}: the curvature probe set is drawn from the training subset. Set it "
            f"to a multiple of {batch_path} = {batch} of at most {train_size}, e.g. {largest}"
            + (f"; or raise {size_path} to {probe}"
               if probe % batch == 0 and probe <= CIFAR10_SIZES["train"] else "")
            + f"{off}. {FIX}")
    below = max(batch, probe // batch * batch)
    above = -(-probe // batch) * batch
    raise ParameterError(
        f"Parameter {probe_path} = {probe} is not a multiple of {batch_path} = {batch}: the "
        f"curvature probe set is whole batches. Set it to {below}"
        + (f" or {above}" if above <= train_size and above != below else "")
        + f"{off}. {FIX}")


FAMILY_OF_DATA = {"cifar10": "vgg", "linear_regression": "dln"}
"""The model family that each kind of a study's data trains (``studies.<s>.data``)."""


def _check_study(params: Mapping[str, Any], study: str, roster: Roster,
                 models: Mapping[str, ModelParameters], reporting: Reporting) -> None:
    """A study's models are of the family its data trains, and its reporting section (the
    shared one with the study's overrides) names layers each of them has."""
    entry = roster.studies[study]
    settings = roster.study_settings({"analysis": params.get("analysis"),
                                      "reporting": reporting.model_dump()}, study)
    for section, cls in (("analysis", Analysis), ("reporting", Reporting)):
        if getattr(entry, section):
            _section(f"studies.{study}.{section}", cls, settings[section])
    family = FAMILY_OF_DATA[entry.data]
    where = f"studies.{study}.reporting" if entry.reporting else "reporting"
    for name in roster.compared_in(study):
        model = models[name].model
        if model.family != family:
            raise ParameterError(
                f"Parameter studies.{study}.models trains '{name}', a {model.family} "
                f"(architecture.family), on the study's data {entry.data!r}, which trains a "
                f"{family}: set models.{name}.architecture.family to {family!r}, or the "
                f"study's data to the model's. {FIX}")
        layers = layer_names(model)
        for key in ("ics_layers", "activation_layers", "histogram_layers"):
            missing = [layer for layer in settings["reporting"][key] or () if layer not in layers]
            if missing:
                raise ParameterError(
                    f"Parameter {where}.{key} names {missing}, which model '{name}' of "
                    f"{study} does not have; its layers are {layers}. {FIX}")


def _seeds_path(params: Mapping[str, Any], model: str) -> str:
    """Where a model's seeds are set as written: its override of ``seeds`` or ``seed``, if any."""
    paths = [parameter_path(params, model, "training", key) for key in ("seeds", "seed")]
    return next((path for path in paths if path.startswith("models.")), paths[0])


def _check_across(params: Mapping[str, Any], sections: Mapping[str, Section], roster: Roster,
                  models: Mapping[str, ModelParameters]) -> None:
    """Rules between parameters and sections that the nodes would otherwise enforce only when
    they reach them (after ingestion, training or an MLflow run): each names the parameters."""
    ingestion, reporting = sections["data_ingestion"], sections["reporting"]
    if ingestion.source == "download" and ingestion.md5 is None:
        raise ParameterError(
            "Parameter data_ingestion.md5 = null with data_ingestion.source = 'download': a "
            "download is always verified. Give the archive's md5 as a quoted string of 32 hex "
            "digits (data_ingestion.md5 or BNSTUDY_CIFAR10_MD5; conf/base/"
            "parameters_data_ingestion.yml gives the official archive's), or read a local copy "
            f"(data_ingestion.source: python_archive or image_folder, with data_ingestion.path). {FIX}")
    if ingestion.source != "download" and not ingestion.path:
        raise ParameterError(
            f"Parameter data_ingestion.path = "
            f"{'null' if ingestion.path is None else repr(ingestion.path)} with "
            f"data_ingestion.source = {ingestion.source!r}: a local source reads an archive or "
            f"folder; set data_ingestion.path (or BNSTUDY_CIFAR10_PATH) to it, or use source "
            f"download. {FIX}")
    for name, model in models.items():
        if model.model.family == "vgg" and model.model.num_classes != len(ingestion.classes):
            raise ParameterError(
                f"Parameter {parameter_path(params, name, 'architecture', 'num_classes')} = "
                f"{model.model.num_classes}, but "
                f"data_ingestion.classes lists {len(ingestion.classes)} classes. {FIX}")
        dimension = sections["linear_data"].dimension
        if model.model.family == "dln" and model.model.width != dimension:
            raise ParameterError(
                f"Parameter {parameter_path(params, name, 'architecture', 'width')} = "
                f"{model.model.width}, but linear_data.dimension = {dimension}: the network "
                f"maps a sample to its target, both of that dimension. Set both alike. {FIX}")
    for study in roster.studies:
        _check_study(params, study, roster, models, reporting)
    for study, entry in roster.studies.items():
        for index, comparison in enumerate(entry.comparisons):
            pair = (comparison.reference, comparison.treatment)
            seeds = {model: models[model].train.seed_list for model in pair}
            if seeds[pair[0]] != seeds[pair[1]]:
                written = [_seeds_path(params, model) for model in pair]
                raise ParameterError(
                    f"Parameters {written[0]} and {written[1]} give studies.{study}."
                    f"comparisons[{index}] the seeds {list(seeds[pair[0]])} for "
                    f"'{pair[0]}' and {list(seeds[pair[1]])} for '{pair[1]}', but a comparison "
                    f"pairs the two models seed by seed: give both the same seeds (drop the "
                    f"roster override, or set the same one for both). {FIX}")


# ------------------------------------------------------------------ configuration reference


BASE_CONF = Path(__file__).resolve().parents[2] / "conf" / "base"
"""The project's conf/base (the study as shipped), which the reference documents."""


def base_parameters(conf: Path = BASE_CONF) -> dict[str, tuple[Any, str]]:
    """conf/base's parameter sections as written, each with the file that states it:
    ``{section: (value, file)}``. ``${globals:<key>}`` is looked up in globals.yml (and the
    file is then globals.yml); ``${oc.env:...}`` stays as written (the variable and the value
    without it), since the reference documents conf/base, not this machine's environment."""
    stated = yaml.safe_load((conf / "globals.yml").read_text())
    sections: dict[str, tuple[Any, str]] = {}
    for path in sorted(conf.glob("parameters*.yml")):
        for name, value in (yaml.safe_load(path.read_text()) or {}).items():
            match = GLOBAL.fullmatch(value) if isinstance(value, str) else None
            sections[name] = ((stated[match[1]], "globals.yml") if match
                              else (_globals_looked_up(value, stated), path.name))
    return sections


GLOBAL = re.compile(r"\$\{globals:([\w.]+)\}")


def _globals_looked_up(value: Any, stated: Mapping[str, Any]) -> Any:
    if isinstance(value, Mapping):
        return {key: _globals_looked_up(item, stated) for key, item in value.items()}
    match = GLOBAL.fullmatch(value) if isinstance(value, str) else None
    return stated[match[1]] if match else value


REFERENCE_INTRO = (
    "# Configuration reference\n",
    "Generated from the pydantic models (`bnstudy.parameters`, `bnstudy.core.config`) and "
    "conf/base by `python -m bnstudy.parameters > docs/configuration.md`; a test keeps it "
    "current. Every parameter is checked before any node runs: unknown keys, missing keys and "
    "wrong types are refused with the parameter's name, its value and what is allowed.\n",
    "The models are the roster (conf/base/parameters_roster.yml): `models.<name>` gives a "
    "model's `normalization` and any override of the shared `architecture`, `training`, "
    "`measurements` and `checkpoints` (parameters_training.yml, whose values are in "
    "conf/base/globals.yml), merged key by key; `studies.<name>` lists the `models` a "
    "study trains, the studies it `extends` (a name or a list; their models it reads) and its `comparisons` "
    "(`reference`, `treatment`). `--params training.learning_rate=0.1` changes every "
    "model, `--params models.baseline.training.learning_rate=0.1` the baseline only.\n",
    "## Where each value is written\n\n"
    "Each value is written once, in the YAML or in the code, never restated in the other (a "
    "test compares the code's defaults with conf/base). **The core's configs hold their "
    "defaults in the code**: `bnstudy.core.ModelConfig` (the paper's network and the noise of "
    "its Algorithm 1), `TrainConfig` (the paper-scale run with the blog's optimizer) and a "
    "`MeasurementConfig`'s `measure_every` (every step; the protocols themselves are the named "
    "`PRESETS`). The core is a library that runs without Kedro or YAML (notebooks, benchmarks, "
    "its own tests build `TrainConfig.from_dict({...})` from a few keys), so its defaults "
    "belong to it; conf/base/globals.yml states only what the study sets otherwise (curvature "
    "on, the two protocols), and never a key at its default. **Every other section is stated "
    "in the YAML alone**: `data_ingestion`, `preprocessing`, `analysis`, `reporting`, `beyond`, `sweep`, "
    "`mlflow`, `checkpoints` and `imported_runs` are read only by the pipelines, their models in "
    "`bnstudy.parameters` have no defaults, and a key missing from the YAML is an error, never "
    "a silent fallback. Environments (conf/cpu, conf/test), roster entries and `--params` "
    "override single keys of either, a core default included (`--params "
    "training.learning_rate=0.1`); each model's MLflow run, and the study's, log every value "
    "the run uses, the code's defaults included. The *value* column below is conf/base's where "
    "*written in* names a conf/base file, else the code's default.\n",
)


def configuration_reference(conf: Path = BASE_CONF) -> str:
    """docs/configuration.md: every parameter with its type, value (conf/base's, or the
    code's default) and meaning, generated from the models above, the core's configs and
    conf/base."""
    base = base_parameters(conf)
    parts = list(REFERENCE_INTRO)
    tables = [
        ("data_ingestion", DataIngestion), ("preprocessing", Preprocessing),
        ("analysis", Analysis), ("reporting", Reporting), ("beyond", Beyond), ("sweep", Sweep),
        ("architecture", ModelConfig), ("training", TrainConfig),
        ("measurements", MeasurementConfig), ("mlflow", Mlflow), ("checkpoints", Checkpoints),
        ("imported_runs", ImportedRuns),
    ]
    for section, cls in tables:
        stated, where = base.get(section, ({}, None))
        title = {"architecture": "architecture (+ models.<name>.normalization)",
                 "measurements": "measurements[i]"}.get(section, section)
        parts.append(f"## `{title}`\n\n{_first_line(cls.__doc__)}\n\n"
                     "| parameter | type | value | written in | meaning |\n|---|---|---|---|---|")
        for name, info in _fields(cls):
            value, written = _value_and_place(cls, name, info, stated, where)
            meaning = (info.description or "").replace("|", "\\|")
            parts.append(f"| `{name}` | {_type_name(info.annotation, info.metadata)} | "
                         f"{value} | {written} | {meaning} |")
        parts.append("")
    parts.append("Measurement presets: " + ", ".join(
        f"`{name}` = {preset.to_dict()}" for name, preset in sorted(PRESETS.items())) + ".\n")
    return "\n".join(parts)


def _value_and_place(cls: type, name: str, info: Any, stated: Any, where: str | None
                     ) -> tuple[str, str]:
    """A parameter's value and where it is written, for the reference table."""
    if cls is ModelConfig and name == "normalization":
        return "each model's", "parameters_roster.yml (`models.<name>`)"
    default = info.default
    has_default = default is not PydanticUndefined and default is not dataclasses.MISSING
    shown = f"`{_yaml(list(default) if isinstance(default, tuple) else default)}`"
    if isinstance(stated, Mapping) and name in stated:
        over = f" (over the code's {shown})" if has_default else ""
        return f"`{_yaml(stated[name])}`", f"conf/base/{where}{over}"
    if has_default:
        return shown, f"code (`{cls.__name__}`)"
    if cls is MeasurementConfig:
        return "the preset's", "code (`PRESETS`)"
    return "**not stated**", "nowhere"  # the test of the reference fails on this


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
