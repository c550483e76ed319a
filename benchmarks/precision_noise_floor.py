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
import sys
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_training import CONFIGS, _device_data, synthetic_data  # noqa: E402

from bnstudy.core import PRESETS, TrainConfig, get_trainer  # noqa: E402
from bnstudy.core.config import MATMUL_PRECISIONS  # noqa: E402


def noise_floor(config_name: str, precision: str, steps: int) -> dict[str, float]:
    """Largest floors over ``steps`` steps, each relative to that step's median ICS."""
    model_config, batch_size, num_train = CONFIGS[config_name]
    train_config = TrainConfig(batch_size=batch_size, eval_batch_size=batch_size,
                               matmul_precision=precision, step_loop="host")
    x, y = synthetic_data(model_config, num_train)
    presets = [PRESETS["paper"]]
    trainer = get_trainer(model_config, train_config, presets, snapshots=False)
    floors = {"conv0_train": 0.0, "repeat_max": 0.0, "fused_repeat": 0.0, "signal": 0.0}
    state = trainer.init_state(jax.random.fold_in(jax.random.key(train_config.seed), 0))
    data = _device_data(trainer, train_config, presets, x, y, state)
    for step in range(steps):
        new_state, _, grads, xb, yb = trainer.measured_step(state, data, np.int32(step))
        _, _, grads_again, _, _ = trainer.measured_step(state, data, np.int32(step))
        params, stats = state["params"], state["batch_stats"]
        ics = trainer._host_ics(params, new_state["params"], stats, grads, xb, yb, True)
        repeat = trainer._host_ics(params, params, stats, grads, xb, yb, True)
        ics, repeat = jax.device_get((ics["l2_layer"], repeat["l2_layer"]))
        signal = float(np.median(ics[1:]))
        g, g2 = (np.concatenate([np.ravel(a) for a in jax.tree.leaves(t)])
                 for t in jax.device_get((grads, grads_again)))
        floors["conv0_train"] = max(floors["conv0_train"], ics[0] / signal)
        floors["repeat_max"] = max(floors["repeat_max"], float(repeat.max()) / signal)
        floors["fused_repeat"] = max(floors["fused_repeat"],
                                     float(np.linalg.norm(g - g2) / np.linalg.norm(g)))
        floors["signal"] = signal
        state = new_state
    return floors


def main(argv: list[str] | None = None) -> int:
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
