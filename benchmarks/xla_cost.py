"""XLA's own FLOP count of a jitted call, shared by the benchmark and the seed-style loop."""

from __future__ import annotations


def compiled_flops(jitted, *args, **kwargs) -> float:
    """``jitted.lower(*args, **kwargs).compile().cost_analysis()["flops"]`` (``jax.jit``,
    ``nnx.jit`` and the core's PrecisionJit all have ``lower``); 0 where XLA reports none."""
    cost = jitted.lower(*args, **kwargs).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # older JAX: one per device
    return float(cost.get("flops", 0.0))
