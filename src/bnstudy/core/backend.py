"""XLA flags that bnstudy runs with on CPUs, applied through ``XLA_FLAGS`` before JAX starts.

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
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

CPU_XLA_FLAGS: tuple[str, ...] = (
    "--xla_cpu_experimental_ynn_fusion_type=-LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION",
)
"""bnstudy's CPU flags: convolutions run in XLA's own kernels, not as YNNPACK fusions."""

OPT_OUT = "BNSTUDY_XLA_CPU_FLAGS"


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
    if environ.get(OPT_OUT, "1").strip().lower() in ("0", "false", "no", "off"):
        return current
    environ["XLA_FLAGS"] = with_cpu_flags(current)
    return environ["XLA_FLAGS"]


__all__ = ["CPU_XLA_FLAGS", "OPT_OUT", "use_cpu_flags", "with_cpu_flags"]
