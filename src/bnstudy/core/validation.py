"""The validation machinery of the core's configs: strict pydantic types, the error type
whose message names the field, the value and what is allowed, and dict conversions.
:mod:`bnstudy.core.config` builds its three dataclasses on it."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Annotated, Any

import pydantic
from pydantic import ConfigDict, Field, Strict

STRICT = ConfigDict(extra="forbid", strict=True)
"""Every config: unknown keys refused, no coercion between kinds (lists become tuples)."""

Int = Annotated[int, Strict()]
PositiveInt = Annotated[int, Strict(), Field(ge=1)]
Float = Annotated[float, Strict()]  # an int is accepted as a float
Ints = Annotated[tuple[Int, ...], Strict(False)]  # a YAML list becomes a (hashable) tuple
PositiveInts = Annotated[tuple[PositiveInt, ...], Strict(False)]


def described(kind: Any, description: str) -> Any:
    """``kind`` with the description that the configuration reference prints."""
    return Annotated[kind, Field(description=description)]


class ConfigError(ValueError):
    """A config value is not allowed. ``field`` and ``value`` are set when one field is at fault.

    Attributes:
        owner: the config class (``TrainConfig``).
        field: the offending field (None for a rule between fields).
        value: the value given to ``field``.
        reason: what is allowed, without the owner and field (``expects int``).
    """

    def __init__(self, owner: str, reason: str, field: str | None = None, value: Any = None,
                 item: str = ""):
        if field is None:
            message = reason
        else:
            message = f"{owner}.{field}{item} {reason}, got {value!r} ({type(value).__name__})"
        super().__init__(message)
        self.owner, self.field, self.value, self.reason, self.item = owner, field, value, reason, item


_KIND_NAMES = {"int_type": "int", "float_type": "int or float", "bool_type": "bool",
               "string_type": "str", "tuple_type": "a list", "literal_error": "a choice"}


def explain(cls: type, error: pydantic.ValidationError) -> ConfigError:
    """The first problem of a pydantic ``error`` for ``cls``, in the words of this project."""
    owner, first = cls.__name__, error.errors(include_url=False)[0]
    kind, ctx, value = first["type"], first.get("ctx", {}), first.get("input")
    if kind == "value_error":  # a rule of __post_init__, already worded for the user
        return ConfigError(owner, str(ctx.get("error", first["msg"])))
    path = [str(part) for part in first["loc"]]
    field = path[0] if path else None
    item = "".join(f"[{part}]" for part in path[1:])
    default = _defaults(cls).get(field, dataclasses.MISSING)
    if kind == "unexpected_keyword_argument":
        return ConfigError(owner, _unknown_keys(cls, [field]))
    if kind == "literal_error":
        reason = f"must be one of {list(choices(cls, field))}"
    elif kind in ("greater_than_equal", "greater_than", "less_than", "less_than_equal"):
        reason = _bound_reason(kind, ctx, value)
    elif kind in ("missing", "too_short", "too_long"):
        reason = f"has the wrong length ({first['msg']})"
    else:
        reason = f"expects {_KIND_NAMES.get(kind, first['msg'])}"
    if default is not dataclasses.MISSING:
        reason += f" (default {default!r})"
    return ConfigError(owner, reason, field, value, item)


def _bound_reason(kind: str, ctx: Mapping[str, Any], value: Any) -> str:
    if kind == "greater_than_equal" and ctx.get("ge") == 1 and isinstance(value, int):
        return "must be a positive integer"
    symbol = {"greater_than_equal": ">=", "greater_than": ">", "less_than": "<",
              "less_than_equal": "<="}[kind]
    return f"must be {symbol} {next(iter(ctx.values()))}"


def choices(cls: type, field: str) -> tuple[Any, ...]:
    """The allowed values of a ``Literal`` field of a config class."""
    annotation = cls.__pydantic_fields__[field].annotation
    return typing.get_args(annotation)


def _defaults(cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls)}


def _unknown_keys(cls: type, unknown: list[str]) -> str:
    return (f"unknown {cls.__name__} key(s) {sorted(unknown)}; valid keys are "
            f"{sorted(_defaults(cls))}. Fix the spelling in your parameters file or remove the key.")


def _from_dict(cls: type, values: Mapping[str, Any]):
    """Build a config dataclass from a plain mapping; every problem is a :class:`ConfigError`."""
    if not isinstance(values, Mapping):
        raise ConfigError(
            cls.__name__, f"{cls.__name__}.from_dict expects a mapping of field names to values, "
            f"got {type(values).__name__}; pass e.g. {{'{dataclasses.fields(cls)[0].name}': ...}}")
    unknown = [key for key in values if key not in _defaults(cls)]
    if unknown:
        raise ConfigError(cls.__name__, _unknown_keys(cls, unknown))
    try:
        return cls(**values)
    except pydantic.ValidationError as error:
        raise explain(cls, error) from None


def _plain(config: Any) -> dict[str, Any]:
    """Plain-dict view of a config (lists instead of tuples), the inverse of ``from_dict``."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}
