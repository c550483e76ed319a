"""Parameters checked before any node runs: ``--params`` as typed, known keys, valid configs.

Kedro reads ``--params key=value`` values as YAML, so ``md5=00000000000000000000000000000000``
becomes the integer 0 and a check that tests ``if md5:`` silently does nothing; and a typo in a
key (``training.learning_rate`` for ``baseline.training.learning_rate``) adds a parameter that
nothing reads, so the run quietly uses the default. Both are caught here.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterator, Mapping
from typing import Any

import click

from bnstudy.reliability.errors import ParameterError

STRING_KEY_SUFFIXES = ("md5",)
"""``--params`` keys whose last part ends so keep the text typed (YAML ``null`` is still None)."""
_YAML_NULLS = ("null", "Null", "NULL", "~")
MODEL_KEYS = frozenset({"normalization", "architecture", "training", "measurements"})
"""A top-level parameter with these keys is one model of the study (a training namespace)."""


def split_params_keeping_strings(ctx: click.Context, param: Any, value: Any) -> Any:
    """Kedro's ``--params`` parser, except that checksum keys keep the string typed."""
    from kedro.framework.cli.utils import _split_params, split_string

    parsed = _split_params(ctx, param, value)
    if isinstance(value, dict) or not value:
        return parsed
    for item in split_string(ctx, param, value):
        key, _, raw = item.partition("=")
        path = key.strip().split(".")
        if path[-1].endswith(STRING_KEY_SUFFIXES) and raw not in _YAML_NULLS:
            target = parsed
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = raw
    return parsed


def leaf_paths(tree: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of the values of a nested mapping that are not themselves mappings."""
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            yield from leaf_paths(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def check_overrides_exist(configured: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
    """Every ``--params`` key must name a configured parameter.

    Raises:
        ParameterError: naming the unknown key and the configured keys it probably meant.
    """
    for path in leaf_paths(overrides):
        unknown = _first_unknown(configured, path.split("."))
        if unknown is None:
            continue
        known = sorted(leaf_paths(configured))
        close = [k for k in known if k.endswith("." + path)]
        close = close or difflib.get_close_matches(path, known, n=3)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise ParameterError(
            f"--params {path}: there is no parameter '{unknown}' in the configuration "
            f"(conf/base and the run's environment), so the run would ignore it.{hint}"
        )


def _first_unknown(tree: Any, parts: list[str]) -> str | None:
    """The shortest prefix of ``parts`` that ``tree`` lacks; None if all is there."""
    for index, part in enumerate(parts):
        if tree is None:
            return None  # a null parameter is free-form: any keys may fill it
        if not isinstance(tree, Mapping) or part not in tree:
            return ".".join(parts[: index + 1])
        tree = tree[part]
    return None


def validate_model_parameters(params: Mapping[str, Any]) -> None:
    """Build every model's configs from ``params`` now, so a bad value fails before any node.

    Raises:
        ParameterError: naming the parameter (``<model>.training.<key>``), its value and what
        is expected.
    """
    from bnstudy.core import ModelConfig, TrainConfig
    from bnstudy.pipelines.training.nodes import build_configs

    for model, values in params.items():
        if not isinstance(values, Mapping) or not MODEL_KEYS <= set(values):
            continue
        for section, config_class in (("architecture", ModelConfig), ("training", TrainConfig)):
            _check_types(f"{model}.{section}", config_class, values[section])
        try:
            build_configs(
                values["normalization"], values["architecture"], values["training"],
                values["measurements"],
            )
        except (ValueError, TypeError) as error:
            raise ParameterError(
                f"Parameters of model '{model}' are not valid: {error}. Fix them in "
                "conf/<env>/globals.yml or parameters_training.yml, or in --params."
            ) from error


def _check_types(where: str, config_class: type, values: Any) -> None:
    """A value of the wrong kind (text for a number) fails with the parameter's full name."""
    if not isinstance(values, Mapping):
        return
    defaults = {f.name: f.default for f in dataclasses.fields(config_class)}
    for key, value in values.items():
        default = defaults.get(key, dataclasses.MISSING)
        if default is dataclasses.MISSING or default is None or value is None:
            continue
        kinds = _accepted_kinds(default)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            expected = " or ".join(kind.__name__ for kind in kinds)
            raise ParameterError(
                f"Parameter {where}.{key} = {value!r} ({type(value).__name__}): "
                f"{config_class.__name__}.{key} expects {expected} (default {default!r}). "
                "Fix it in conf/<env>/globals.yml or parameters_training.yml, or in --params."
            )


def _accepted_kinds(default: Any) -> tuple[type, ...]:
    if isinstance(default, bool):
        return (bool,)
    if isinstance(default, int):
        return (int,)
    if isinstance(default, float):
        return (int, float)
    if isinstance(default, (tuple, list)):
        return (tuple, list)
    return (type(default),)
