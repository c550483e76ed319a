"""The study's settings, read from ``conf/<env>/globals.yml`` over ``conf/base/globals.yml``.

The benchmarks and the GPU scripts read the same YAML that the Kedro pipelines read, with
plain PyYAML (a Flax dependency, so the device machine has it; Kedro is not needed there),
so no default of the study is written twice. Environments are merged the way
``settings.py``'s ``OmegaConfigLoader`` merges ``globals`` ("soft"): mappings key by key,
lists and scalars replaced.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from bnstudy.core import MeasurementConfig, ModelConfig, TrainConfig

CONF = Path(__file__).resolve().parents[1] / "conf"


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        return {**base, **{key: _merge(base.get(key), value)
                           for key, value in override.items()}}
    return override


def load_globals(env: str | None = None, conf: Path = CONF) -> dict[str, Any]:
    """conf/base/globals.yml, with conf/<env>/globals.yml merged over it when ``env`` is
    given (e.g. "cpu", "test")."""
    values = yaml.safe_load((conf / "base" / "globals.yml").read_text())
    if env is not None:
        path = conf / env / "globals.yml"
        if not path.exists():
            raise ValueError(f"no environment {env!r}: {path} does not exist")
        values = _merge(values, yaml.safe_load(path.read_text()) or {})
    return values


def study_configs(env: str | None = None, normalization: str = "batch"
                  ) -> tuple[ModelConfig, TrainConfig, list[MeasurementConfig]]:
    """(model, training, measurement protocols) of the study in environment ``env``, for
    the model with ``normalization`` ("none": the baseline, "batch": the candidate)."""
    values = load_globals(env)
    model_config = ModelConfig.from_dict({**values["architecture"],
                                          "normalization": normalization})
    train_config = TrainConfig.from_dict(values["training"])
    presets = [MeasurementConfig.from_dict(preset) for preset in values["measurements"]]
    return model_config, train_config, presets
