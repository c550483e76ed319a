"""XLA's own FLOP count of compiled programs, shared by the benchmark and the seed-style loop."""

from __future__ import annotations


def executable_flops(executable) -> float:
    """``executable.cost_analysis()["flops"]`` of a compiled program (``jax.stages.Compiled``,
    as ``bnstudy.core.programs.compiled`` returns); 0 where XLA reports none."""
    cost = executable.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # older JAX: one per device
    return float((cost or {}).get("flops", 0.0))


def compiled_flops(jitted, *args, **kwargs) -> float:
    """The FLOPs of ``jitted.lower(*args, **kwargs).compile()`` (``jax.jit`` and
    ``nnx.jit`` functions both have ``lower``)."""
    return executable_flops(jitted.lower(*args, **kwargs).compile())
