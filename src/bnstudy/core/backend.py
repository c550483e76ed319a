"""How bnstudy starts JAX: its XLA flags on CPUs (``XLA_FLAGS``) and the persistent compilation
cache, both set before JAX compiles anything.

jaxlib 0.10 hands every convolution on the CPU to YNNPACK. For the study's VGG, YNNPACK's
kernel gradient of a convolution over a large map with few channels is the slowest op of a
training step: at 1/8 width (the ``cpu`` environment) the kernel gradients of conv_0 and
conv_1 took 81 of a step's 205 ms on a 2-core AMD EPYC without AVX-512 (XLA's profile). With
convolutions left to XLA's own (Eigen) kernels, a plain step of the model without BN takes
about 0.12 s instead of 0.21 s, and of the BN model 0.17 s instead of 0.21 s; a measured step
3.3 s instead of 4.3 s (docs/performance.md). The flag only changes which library runs a
convolution on the CPU: the same HLO, the same float32 products, sums in another order (the
float64 reference checks pass unchanged). GPU and TPU backends ignore it.

XLA reads ``XLA_FLAGS`` once, when JAX starts its first backend, so :func:`use_cpu_flags` has to
run before the first JAX computation of the process. ``kedro run`` does this in
:class:`bnstudy.xla_hooks.XlaFlagsHooks`; the benchmarks, the GPU runner and the tests call it
first thing. A flag the user has already set in ``XLA_FLAGS`` wins, and
``BNSTUDY_XLA_CPU_FLAGS=0`` leaves ``XLA_FLAGS`` alone.

``kedro run`` (the same hook) and the tests also switch on JAX's persistent compilation cache
(:func:`use_compilation_cache`; the timing benchmarks leave it off, as they time compiles):
XLA:CPU serializes its executables, so a second process that compiles the same program (the
same HLO, jaxlib, XLA flags and devices: JAX's cache key) loads it from disk instead. The
folder is ``.jax_cache/`` in the project (git-ignored); ``BNSTUDY_JAX_CACHE`` names another
folder or, as ``0``, leaves JAX's cache settings alone, and a ``JAX_COMPILATION_CACHE_DIR`` the
user set wins. Every program is cached, however fast it compiled: a run compiles hundreds of
small ones (a median 49 ms each in a ``test``-sized training), and loading one takes a tenth
of its compile time or less.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

CPU_XLA_FLAGS: tuple[str, ...] = (
    "--xla_cpu_experimental_ynn_fusion_type=-LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION",
)
"""bnstudy's CPU flags: convolutions run in XLA's own kernels, not as YNNPACK fusions."""

OPT_OUT = "BNSTUDY_XLA_CPU_FLAGS"

CACHE_SETTING = "BNSTUDY_JAX_CACHE"
"""Unset or ``1``: the project's :data:`CACHE_FOLDER`; ``0``: off; anything else: the folder."""

CACHE_FOLDER = ".jax_cache"
"""The compilation cache's folder in the project (and in the checkout, for the tests)."""

CACHE_MIN_COMPILE_TIME_SECS = 0.0
"""JAX's default (1 s) would leave 272 of the 289 programs of a ``test``-sized training, a third
of its compile time, uncached (docs/performance.md: Persistent compilation cache)."""

_OFF = ("0", "false", "no", "off")


def _name(flag: str) -> str:
    return flag.split("=", 1)[0]


def with_cpu_flags(xla_flags: str) -> str:
    """``xla_flags`` plus each of :data:`CPU_XLA_FLAGS` whose name it does not set already."""
    present = {_name(flag) for flag in xla_flags.split()}
    extra = [flag for flag in CPU_XLA_FLAGS if _name(flag) not in present]
    return " ".join([*xla_flags.split(), *extra])


def use_cpu_flags(environ: MutableMapping[str, str] = os.environ) -> str:
    """Add :data:`CPU_XLA_FLAGS` to ``environ["XLA_FLAGS"]`` (unless ``BNSTUDY_XLA_CPU_FLAGS``
    is ``0``) and return the value. It takes effect only if no JAX backend has started yet."""
    current = environ.get("XLA_FLAGS", "")
    if environ.get(OPT_OUT, "1").strip().lower() in _OFF:
        return current
    environ["XLA_FLAGS"] = with_cpu_flags(current)
    return environ["XLA_FLAGS"]


def compilation_cache_settings(project_path: str | os.PathLike,
                               environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment variables of JAX's persistent compilation cache that bnstudy sets,
    empty when ``BNSTUDY_JAX_CACHE`` is off.

    The folder is the user's ``JAX_COMPILATION_CACHE_DIR`` when set, else the folder that
    ``BNSTUDY_JAX_CACHE`` names, else ``<project_path>/.jax_cache``; always absolute, so that
    processes started in other working directories share it. A
    ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` the user set wins too.
    """
    setting = environ.get(CACHE_SETTING, "1").strip()
    if setting.lower() in _OFF:
        return {}
    folder = environ.get("JAX_COMPILATION_CACHE_DIR") or (
        setting if setting.lower() not in ("", "1", "true", "yes", "on")
        else Path(project_path) / CACHE_FOLDER)
    return {
        "JAX_COMPILATION_CACHE_DIR": str(Path(folder).expanduser().absolute()),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": environ.get(
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", str(CACHE_MIN_COMPILE_TIME_SECS)),
    }


def use_compilation_cache(project_path: str | os.PathLike) -> str | None:
    """Switch on JAX's persistent compilation cache (:func:`compilation_cache_settings`) for
    this process and the processes it starts; returns the folder, or None when it is off.

    JAX reads its environment variables when it is imported (importing ``bnstudy.core``
    imports it), so the settings go to ``jax.config`` as well as to ``os.environ`` (for child
    processes). Call it before the first compilation: JAX opens the cache folder once.
    """
    settings = compilation_cache_settings(project_path)
    if not settings:
        return None
    import jax

    os.environ.update(settings)
    jax.config.update("jax_compilation_cache_dir", settings["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(settings["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
    return settings["JAX_COMPILATION_CACHE_DIR"]


__all__ = ["CACHE_FOLDER", "CACHE_SETTING", "CPU_XLA_FLAGS", "OPT_OUT",
           "compilation_cache_settings", "use_compilation_cache", "use_cpu_flags",
           "with_cpu_flags"]
