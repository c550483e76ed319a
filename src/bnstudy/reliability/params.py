"""``--params`` checked before any node runs: typed as written, and naming known keys.

The values themselves are validated by :func:`bnstudy.parameters.validate_parameters`.

Kedro reads ``--params key=value`` values as YAML, so ``md5=00000000000000000000000000000000``
becomes the integer 0 and a check that tests ``if md5:`` silently does nothing; and a typo in a
key (``training.learning_rate`` for ``baseline.training.learning_rate``) adds a parameter that
nothing reads, so the run quietly uses the default. Both are caught here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any

import click
from omegaconf import OmegaConf

from bnstudy.errors import ParameterError

STRING_KEY_SUFFIXES = ("md5",)
"""``--params`` keys whose last part ends so keep the text typed (YAML ``null`` is still None)."""


def split_params_keeping_strings(ctx: click.Context, param: Any, value: Any) -> Any:
    """Kedro's ``--params`` parser, except that checksum keys keep the string typed.

    As Kedro 1.7's ``kedro run --params`` callback does: the text is split on commas
    (Kedro's :func:`split_string`), each ``key=value`` item's value is read as YAML and its
    dotted key makes nested mappings (OmegaConf's dotlist, which Kedro uses), later items
    override earlier ones, and an item without ``=`` or with an empty key fails with Kedro's
    messages. A mapping (from ``kedro run --config``) is returned as it is.

    Returns:
        The nested mapping of the overrides; a key in :data:`STRING_KEY_SUFFIXES` holds the
        text typed (stripped) unless YAML reads it as a string or null anyway.
    """
    from kedro.framework.cli.utils import split_string  # Kedro's CLI, only when a command runs

    if isinstance(value, dict):
        return value
    overrides = OmegaConf.create()
    for item in split_string(ctx, param, value or ""):
        key, text = _key_and_value(ctx, param, item)
        overrides.merge_with_dotlist([f"{key}={text}"])
        typed = OmegaConf.select(overrides, key)
        if key.split(".")[-1].endswith(STRING_KEY_SUFFIXES) and not isinstance(typed, str | None):
            OmegaConf.update(overrides, key, text.strip())
    return OmegaConf.to_container(overrides)


def _key_and_value(ctx: click.Context, param: Any, item: str) -> tuple[str, str]:
    """One ``key=value`` item split at its first ``=``, the key stripped; Kedro's own
    ``ctx.fail`` messages for an item without ``=`` or with an empty key."""
    if "=" not in item:
        ctx.fail(
            f"Invalid format of `{param.name}` option: "
            f"Item `{item}` must contain a key and a value separated by `=`."
        )
    key, _, text = item.partition("=")
    if not key.strip():
        ctx.fail(f"Invalid format of `{param.name}` option: Parameter key cannot be an empty string.")
    return key.strip(), text


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
        raise ParameterError(
            f"--params {path}: there is no parameter '{unknown}' in the configuration "
            f"(conf/base and the run's environment), so the run would ignore it.{_hint(configured, path)}"
        )


def _hint(configured: Mapping[str, Any], path: str) -> str:
    """The keys an unknown ``path`` probably meant: those it is the tail of (the first two in
    full, the other sections by name: six models share ``training.learning_rate``), else
    the three closest spellings; empty if none is close."""
    known = sorted(leaf_paths(configured))
    under = [k for k in known if k.endswith("." + path)]
    if not under:
        close = difflib.get_close_matches(path, known, n=3)
        return f" Did you mean {' or '.join(close)}?" if close else ""
    hint = f" Did you mean {' or '.join(under[:2])}?"
    rest = [k[: -len(path) - 1] for k in under[2:]]
    if rest:
        hint += f" The same key is also under {', '.join(rest[:-1]) + ' and ' if rest[:-1] else ''}{rest[-1]}."
    return hint


def _first_unknown(tree: Any, parts: list[str]) -> str | None:
    """The shortest prefix of ``parts`` that ``tree`` lacks; None if all is there."""
    for index, part in enumerate(parts):
        if tree is None:
            return None  # a null parameter is free-form: any keys may fill it
        if not isinstance(tree, Mapping) or part not in tree:
            return ".".join(parts[: index + 1])
        tree = tree[part]
    return None
