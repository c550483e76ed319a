"""Noise floor of the gradient-ICS measurement at each matmul precision.

    python benchmarks/precision_noise_floor.py --config cpu --steps 3

For each ``TrainConfig.matmul_precision`` setting and a few training steps of the VGG with
BN (synthetic data), prints, relative to the median train-mode ICS of the layers conv_1..out
(the typical signal):

* ``conv0_train``: conv_0's train-mode ICS, 0 by definition (G'_0 = G_0), so pure rounding;
* ``repeat_max``: the largest per-layer "ICS" of a repeated identical gradient computation,
  i.e. G' computed exactly like the ICS but at W_t instead of W_{t+1} (no update at all);
* ``fused_repeat``: ||g_t - g_t'|| / ||g_t|| for the step's own gradient computed twice.

Floors well below 1% of the signal mean the precision does not drown the measurement. On a
CPU every setting runs true float32 convolutions, so all floors are ~1e-7; the question this
answers on GPUs (TF32 matmuls) needs a GPU session.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_training import CONFIGS, synthetic_data  # noqa: E402

from bnstudy.core import init_states  # noqa: E402
from bnstudy.core.backend import use_cpu_flags  # noqa: E402
from bnstudy.core.config import MATMUL_PRECISIONS  # noqa: E402
from bnstudy.core.executor import data_measured_step  # noqa: E402
from bnstudy.core.programs import CompiledOps, call  # noqa: E402
from bnstudy.core.state import run_slice  # noqa: E402
from bnstudy.core.step import Spec, gradient_ics_by_layers, model_of  # noqa: E402
from bnstudy.core.training import data_orders  # noqa: E402


def _vector(tree) -> np.ndarray:
    return np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(tree)])


def noise_floor(config_name: str, precision: str, steps: int) -> dict[str, float]:
    """Largest floors over ``steps`` steps, each relative to that step's median ICS.

    Runs the engine's own programs (``programs.call`` of ``data_measured_step`` and the
    host loop's layer-chained ICS, :func:`gradient_ics_by_layers` over ``CompiledOps``)."""
    model_config, study_train, num_train = CONFIGS[config_name]
    train_config = dataclasses.replace(study_train, matmul_precision=precision, seeds=(),
                                       step_loop="host")
    spec = Spec.of(model_config, train_config)
    ops = CompiledOps(spec)
    x, y = synthetic_data(model_config, num_train)
    states = init_states(model_of(model_config), train_config)
    per_epoch = train_config.steps_per_epoch(num_train)
    order = data_orders(states, -(-steps // per_epoch), num_train,
                        per_epoch * train_config.batch_size)[0]
    state, data = run_slice(states, 0), (jnp.asarray(x), jnp.asarray(y), order)
    floors = {"conv0_train": 0.0, "repeat_max": 0.0, "fused_repeat": 0.0, "signal": 0.0}
    for _ in range(steps):
        new_state, _, grads, xb, yb = call("measured_step", data_measured_step, spec, state,
                                           *data)
        grads_again = call("measured_step", data_measured_step, spec, state, *data)[2]
        params, stats = state.params, state.batch_stats
        ics = gradient_ics_by_layers(ops, spec, params, new_state.params, stats, grads, xb,
                                     yb, train=True)
        repeat = gradient_ics_by_layers(ops, spec, params, params, stats, grads, xb, yb,
                                        train=True)
        ics, repeat = jax.device_get((ics["l2_layer"], repeat["l2_layer"]))
        signal = float(np.median(ics[1:]))
        g, g2 = (_vector(t) for t in jax.device_get((grads, grads_again)))
        floors["conv0_train"] = max(floors["conv0_train"], ics[0] / signal)
        floors["repeat_max"] = max(floors["repeat_max"], float(repeat.max()) / signal)
        floors["fused_repeat"] = max(floors["fused_repeat"],
                                     float(np.linalg.norm(g - g2) / np.linalg.norm(g)))
        floors["signal"] = signal
        state = new_state
    return floors


def main(argv: list[str] | None = None) -> int:
    use_cpu_flags()  # before JAX starts a backend (bnstudy.core.backend)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="cpu")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--precisions", nargs="*", default=list(MATMUL_PRECISIONS),
                        choices=MATMUL_PRECISIONS)
    args = parser.parse_args(argv)
    device = jax.devices()[0]
    print(f"config {args.config}, {args.steps} steps, device {device.platform} "
          f"({device.device_kind}); floors relative to the median train-mode ICS of "
          "conv_1..out")
    print(f"{'precision':>14}  {'conv0_train':>12}  {'repeat_max':>12}  {'fused_repeat':>12}"
          f"  {'median ICS':>12}")
    for precision in args.precisions:
        floors = noise_floor(args.config, precision, args.steps)
        print(f"{precision:>14}  {floors['conv0_train']:12.2e}  {floors['repeat_max']:12.2e}"
              f"  {floors['fused_repeat']:12.2e}  {floors['signal']:12.3e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
