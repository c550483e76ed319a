"""Compiled programs, cached by value: (name, spec, static arguments, input signature).

A program is compiled ahead of time (``jax.jit(...).lower(...).compile()``) under the
spec's matmul precision. The resulting executable never traces again, so any thread may
call it; the cache is keyed by values (configs are frozen dataclasses), never by the
objects that asked for it, and it is bounded.
"""

from __future__ import annotations

import collections
import functools
import threading
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from bnstudy.core.step import OPS, Spec

COMPILE_COUNTS: collections.Counter[str] = collections.Counter()
"""How often each program was compiled (the compile-once tests read it)."""

_MAX_PROGRAMS = 512
_CACHE: collections.OrderedDict[tuple, Any] = collections.OrderedDict()
_LOCK = threading.Lock()


def _signature(args: tuple) -> tuple:
    leaves, treedef = jax.tree.flatten(args)
    return treedef, tuple((np.shape(leaf), (np.dtype(leaf.dtype) if hasattr(leaf, "dtype")
                                            else np.result_type(leaf)).str,
                           bool(getattr(leaf, "weak_type", False))) for leaf in leaves)


def compiled(name: str, fn: Callable, spec: Spec, args: tuple, *,
             static: tuple[tuple[str, Any], ...] = (), donate: tuple[int, ...] = (),
             key_extra: tuple = ()):
    """The executable of ``fn(spec, *args, **static)`` for these argument shapes.

    Compiled once per (name, spec, static, key_extra, signature, x64) and reused by value;
    ``key_extra`` names what ``fn`` has bound already (e.g. a plan's computations).
    """
    key = (name, spec, static, key_extra, donate, _signature(args),
           bool(jax.config.jax_enable_x64))
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    executable = lowered(fn, spec, args, static=static, donate=donate).compile()
    with _LOCK:
        COMPILE_COUNTS[name] += 1
        _CACHE[key] = executable
        while len(_CACHE) > _MAX_PROGRAMS:
            _CACHE.popitem(last=False)
    return executable


def lowered(fn: Callable, spec: Spec, args: tuple, *,
            static: tuple[tuple[str, Any], ...] = (), donate: tuple[int, ...] = ()):
    """``jax.jit(fn)`` lowered for ``args`` under the spec's matmul precision, whoever
    calls it (a bare jit outside a precision context runs DEFAULT: TF32 on NVIDIA GPUs)."""
    bound = functools.partial(fn, spec, **dict(static))
    with jax.default_matmul_precision(spec.program.matmul_precision):
        return jax.jit(bound, donate_argnums=donate).lower(*args)


def call(name: str, fn: Callable, spec: Spec, *args, donate: tuple[int, ...] = (), **static):
    """Compile (once) and run ``fn(spec, *args, **static)``."""
    return compiled(name, fn, spec, args, static=tuple(sorted(static.items())),
                    donate=donate)(*args)


class _BoundOps(collections.abc.Mapping):
    """:data:`bnstudy.core.step.OPS` bound to one spec, by name."""

    def __init__(self, spec: Spec):
        self.spec = spec

    def __iter__(self):
        return iter(OPS)

    def __len__(self) -> int:
        return len(OPS)


class CompiledOps(_BoundOps):
    """:data:`bnstudy.core.step.OPS` bound to compiled programs of one spec (the host loop).

    ``ops[name](*args, **static)`` compiles on first use and dispatches asynchronously;
    :meth:`resolve` returns the executable without running it (for another thread).
    """

    def __getitem__(self, name: str) -> Callable:
        return functools.partial(call, name, OPS[name], self.spec)

    def resolve(self, name: str, *args, **static):
        """The executable of op ``name`` for these arguments (compiled here if new)."""
        return compiled(name, OPS[name], self.spec, args, static=tuple(sorted(static.items())))


class DirectOps(_BoundOps):
    """:data:`bnstudy.core.step.OPS` as plain functions of one spec (inside a trace: the scan
    loop)."""

    def __getitem__(self, name: str) -> Callable:
        return functools.partial(OPS[name], self.spec)
