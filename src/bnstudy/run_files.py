"""A model's training results as files: how a run made elsewhere becomes part of a study here.

``benchmarks/paper_run.py`` trains on a machine that has JAX, Flax, optax and NumPy but not
Kedro, pandas or MLflow (a bare GPU machine). It writes each model's
:class:`~bnstudy.core.TrainingResult` list with :func:`save_results`; ``kedro run`` with
``imported_runs.path`` set reads them back with :func:`load_results` in place of training
(``pipelines/training``), so the traces, states, run record, MLflow run, analysis and report
are made by the same code as for a model trained here.

Layout of one model: ``<folder>/results.npz`` holds every array (``a0``, ``a1``, ...) and
``<folder>/results.json`` the rest: the format, each run's fields with its arrays replaced by
their keys, and ``about`` (the configs of the stacked run, the data's fingerprint, the runtime).
Arrays keep their dtypes and values bit for bit; the JSON floats read back exactly. Nothing
here runs code from a file (``np.load`` without pickles, JSON).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bnstudy.core.results import TrainingResult
from bnstudy.errors import ParameterError

FORMAT = "bnstudy.run_files/1"
ARRAY, SCALAR = "__array__", "__scalar__"


def _encoded(value: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` as JSON, its arrays (and numpy scalars) moved to ``arrays`` under ``key``."""
    if isinstance(value, Mapping):
        for name in value:
            if not isinstance(name, str) or name.startswith("__"):
                raise ValueError(f"cannot save the key {name!r} of {key}: keys are strings "
                                 "that do not start with '__'")
        return {name: _encoded(item, f"{key}/{name}", arrays) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encoded(item, f"{key}/{i}", arrays) for i, item in enumerate(value)]
    if isinstance(value, np.generic) or hasattr(value, "__array__"):
        array = np.asarray(value)
        if array.dtype == object:
            raise ValueError(f"cannot save {key}: an object array")
        name = f"a{len(arrays)}"  # its path is in the JSON; the npz name only has to be unique
        arrays[name] = array
        return {ARRAY: name, SCALAR: isinstance(value, np.generic)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"cannot save {key}: a {type(value).__name__}")


def _decoded(value: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(value, dict) and ARRAY in value:
        array = arrays[value[ARRAY]]
        return array[()] if value[SCALAR] else array
    if isinstance(value, dict):
        return {name: _decoded(item, arrays) for name, item in value.items()}
    if isinstance(value, list):
        return [_decoded(item, arrays) for item in value]
    return value


def save_results(results: list[TrainingResult], folder: Path, about: Mapping[str, Any]) -> Path:
    """Write one model's ``results`` (one per run of its stacked run) and ``about`` (JSON
    values) to ``folder`` (created); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    runs = [{field.name: _encoded(getattr(result, field.name), f"{i}/{field.name}", arrays)
             for field in dataclasses.fields(TrainingResult)}
            for i, result in enumerate(results)]
    np.savez(folder / "results.npz", **arrays)
    document = {"format": FORMAT, "runs": runs, "about": _encoded(dict(about), "about", {})}
    (folder / "results.json").write_text(json.dumps(document, indent=1))
    return folder


def load_results(folder: Path) -> tuple[list[TrainingResult], dict[str, Any]]:
    """``(results, about)`` that :func:`save_results` wrote to ``folder``.

    Raises:
        FileNotFoundError: ``folder`` holds no ``results.json`` and ``results.npz``.
        ValueError: another format.
    """
    document_path, arrays_path = folder / "results.json", folder / "results.npz"
    missing = [str(p) for p in (document_path, arrays_path) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} holds no saved training results (missing "
                                f"{', '.join(missing)}): give the folder that "
                                "benchmarks/paper_run.py --out wrote, which has one such folder "
                                "per model")
    document = json.loads(document_path.read_text())
    if document.get("format") != FORMAT:
        raise ValueError(f"{document_path} is of format {document.get('format')!r}, not "
                         f"{FORMAT!r}: write it again with this version's benchmarks/paper_run.py")
    with np.load(arrays_path, allow_pickle=False) as loaded:
        arrays = {key: loaded[key] for key in loaded.files}
    results = [TrainingResult(**_decoded(run, arrays)) for run in document["runs"]]
    return results, document["about"]


def runtime_provenance() -> dict[str, Any]:
    """Library versions, the device the run used and the ``XLA_FLAGS`` it started JAX with
    (for the report's Setup); a library that is not installed (Kedro on a GPU machine) is
    left out."""
    import os
    import platform
    from importlib import metadata

    import jax

    versions = {}
    for name in ("jax", "jaxlib", "flax", "optax", "kedro"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    device = jax.devices()[0]
    return {"versions": versions, "backend": jax.default_backend(), "device_kind": device.device_kind,
            "device_count": jax.device_count(), "cpu": cpu,
            "xla_flags": os.environ.get("XLA_FLAGS", "")}


def data_fingerprint(x_train, y_train, x_test, y_test) -> str:
    """The fingerprint of a run's data (:func:`bnstudy.core.checkpoint.fingerprint`, the one
    its checkpoints are keyed by)."""
    from bnstudy.core.checkpoint import fingerprint

    return fingerprint({}, {"x_train": x_train, "y_train": y_train, "x_test": x_test,
                            "y_test": y_test})


def configs_about(model_config, train_config, measurement_configs) -> dict[str, Any]:
    """What identifies a model's run: its configs as dicts, without the device count (a run
    sharded over devices computes the same to rounding)."""
    return {"model_config": model_config.to_dict(), "train_config": train_config.identity(),
            "measurement_configs": [config.to_dict() for config in measurement_configs]}


def _first_difference(here: Any, there: Any, where: str) -> str | None:
    if isinstance(here, Mapping) and isinstance(there, Mapping):
        for key in sorted(set(here) | set(there)):
            found = _first_difference(here.get(key), there.get(key), f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(here, list) and isinstance(there, list) and len(here) == len(there):
        return next((found for i, (a, b) in enumerate(zip(here, there, strict=True))
                     if (found := _first_difference(a, b, f"{where}[{i}]"))), None)
    return None if here == there else f"{where} is {here!r} here, {there!r} there"


def matching_results(root: Path, about: Mapping[str, Any], data: str
                     ) -> tuple[list[TrainingResult], dict[str, Any]]:
    """The results under ``root`` (one folder per model, :func:`save_results`) whose configs
    equal ``about`` (:func:`configs_about` of the model to be read) and whose data
    fingerprint is ``data``, with their ``about``.

    Raises:
        ParameterError: ``root`` holds no saved results, no folder has this model's configs
            (each folder's first difference is named), or the one that has them was trained
            on other data.
    """
    folders = sorted(p.parent for p in Path(root).glob("*/results.json"))
    if not folders:
        raise ParameterError(f"imported_runs.path {root} holds no saved training results "
                                "(<model>/results.json): give the folder that "
                                "benchmarks/paper_run.py --out wrote")
    differences = []
    for folder in folders:
        saved = json.loads((folder / "results.json").read_text())["about"]
        difference = _first_difference(dict(about), {key: saved.get(key) for key in about}, "")
        if difference is None:
            if saved.get("data_fingerprint") != data:
                raise ParameterError(
                    f"{folder} has this model's configuration but was trained on other data "
                    f"(data fingerprint {str(saved.get('data_fingerprint'))[:12]} there, "
                    f"{data[:12]} here): give preprocessing.train_size, test_size and seed, and "
                    "the data source, the values the run had (paper_run.py --train-size, "
                    "--test-size; preprocessing.seed 0)")
            return load_results(folder)
        differences.append(f"{folder.name}: {difference.lstrip('.')}")
    raise ParameterError(f"no results under {root} were trained with this model's configuration; "
                     f"{'; '.join(differences)}. Run paper_run.py with the settings of this "
                     "environment (--env), or give the parameters the run had")
