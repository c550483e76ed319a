"""Small synthetic inputs of the report: run records, provenance, comparisons, Fidelity rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bnstudy.analysis import statistics as st
from bnstudy.analysis.fidelity import with_holm

PRESETS = ("blog", "paper")


def view(candidate, baseline, kind: str = "ratio") -> dict[str, Any]:
    """A comparison view as ``model_comparisons_summary`` holds it, worded by the real code."""
    comparison = st.paired_comparison(candidate, baseline, kind=kind)
    neutral = 1.0 if kind == "ratio" else 0.0
    direction = ("none" if not comparison.significant
                 else "lower" if comparison.estimate < neutral else "higher")
    return {"n": comparison.n, "per_seed": list(comparison.per_seed), "estimate": comparison.estimate,
            "low": comparison.low, "high": comparison.high, "p_value": comparison.p_value,
            "test": comparison.test, "kind": kind, "significant": comparison.significant,
            "direction": direction, "text": comparison.describe()}


def measure(label: str, seeds: int, ratio: float, disagreement: str = "", normalized: bool = True):
    rng = np.random.default_rng(seeds)
    base = 1.0 + rng.random(seeds)
    cand = base * ratio * np.exp(rng.normal(0, 0.01, seeds))
    out = {"label": label, "overall": view(cand, base),
           "phases": {p: view(cand, base) for p in ("early", "middle", "late")},
           "matched_loss": view(cand * 2, base), "disagreement": disagreement, "excluded_stalled_rows": 4}
    if normalized:
        out["normalized"] = view(cand, base)
    return out


def comparisons(seeds: list[int]) -> dict[str, Any]:
    n = len(seeds)
    measures = {}
    for preset in PRESETS:
        measures[f"{preset}/loss_range"] = measure(f"loss range along the gradient ({preset} protocol)", n, 0.4,
                                                   "the views disagree (overall: lower; normalized by ||g||: "
                                                   "no significant difference)")
        measures[f"{preset}/ics_l2"] = measure(f"gradient ICS, L2 ({preset} protocol)", n, 1.5)
    measures["activation/delta_mu"] = measure("activation shift |delta mu|", n, 0.5, normalized=False)
    measures["init_distance"] = {"label": "distance of the conv kernels from their initialization",
                                 "overall": view(np.full(n, 0.5), np.linspace(1, 2, n))}
    measures["test_accuracy"] = {"label": "final test accuracy",
                                 "overall": view(np.linspace(0.6, 0.62, n), np.linspace(0.4, 0.45, n), "difference")}
    return {"seeds": sorted(seeds), "measures": measures,
            "stalled": {"total_steps": 20, "plateau_exit_step": {
                "baseline": {str(s): None for s in seeds}, "candidate": {str(s): 12.0 for s in seeds}},
                "stalled_steps": {str(s): 7 for s in seeds}}}


CLAIMS = [("ics", "Gradient ICS is not reduced by BN", "not reduced", "inconclusive", "paper/ics_l2",
           "paper protocol", "yes"),
          ("landscape", "Smoother loss landscape with BN", "smoother", "smoother", "paper/loss_range",
           "paper protocol", "yes"),
          ("shift", "Activation shift | similar or larger", "similar", "smaller", "activation/delta_mu",
           "activation snapshots (no protocol)", "no")]


def fidelity(summary: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for key, claim, paper, blog, name, protocol, agrees in CLAIMS:
        overall = summary["measures"][name]["overall"]
        rows.append({"key": key, "claim": claim, "paper": paper, "blog": blog, "measure": name, "protocol": protocol,
                     "this_run": overall["text"], "significant": overall["significant"], "n_seeds": overall["n"],
                     "agrees": agrees if overall["n"] >= 2 else "untested (one seed)",
                     "p_value": overall["p_value"], "kind": overall["kind"],
                     "detectable": st.detectable_effect(overall["per_seed"], kind=overall["kind"])})
    return {"rows": with_holm(rows)}


BLOG_OPTIMIZER = {"learning_rate": 0.035, "momentum": 0.9, "nesterov": False}
PAPER_OPTIMIZER = {"learning_rate": 0.1, "momentum": 0.0, "nesterov": False}


def record(seeds: list[int], normalization: str, optimizer: dict[str, Any] = BLOG_OPTIMIZER) -> dict[str, Any]:
    return {
        "model_config": {"normalization": normalization, "conv_features": [64, 128], "pool_after": [1],
                         "dense_features": [96], "width_multiplier": 0.125},
        "train_config": {"seed": seeds[0], "seeds": seeds, **optimizer, "batch_size": 32, "epochs": 2,
                         "matmul_precision": "highest"},
        "measurement_configs": [
            {"name": "blog", "measure_every": 1, "ics_mode": "eval", "probe_start": "post_step", "probe_mode": "eval"},
            {"name": "paper", "measure_every": 8, "ics_mode": "train", "probe_start": "pre_step",
             "probe_mode": "train"}],
        "seeds": seeds, "num_steps": 20, "num_train": 320, "num_test": 100,
        "wall_time_s": 12.34 if normalization == "none" else 23.45, "compile_time_s": 5.0,
        "final_test_accuracy": 0.5,
        "per_seed": {str(s): {"final_test_accuracy": 0.4 + 0.01 * i + (0.2 if normalization == "batch" else 0),
                              "final_test_loss": 1.5} for i, s in enumerate(seeds)},
        "runtime": {"versions": {"jax": "0.7.1", "jaxlib": "0.7.1", "flax": "0.11.2", "optax": "0.2.5",
                                 "kedro": "1.0.0"},
                    "backend": "cpu", "device_kind": "cpu", "device_count": 1, "cpu": "Example CPU Model 9000"},
    }


PROVENANCE = {"source": "image_folder", "location": "/data/shared/cifar10-jpeg.tar.gz",
              "md5": "0123456789abcdef0123456789abcdef", "sha256": "f" * 64, "checksum": "sha256:" + "f" * 64,
              "num_train": 320, "num_test": 100}
PREPROCESSING = {"train_size": 320, "test_size": 100, "seed": 0}
PARAMS = {"title": "A bnstudy report", "environment": "test"}


def inputs(seeds: list[int], optimizer: dict[str, Any] = BLOG_OPTIMIZER) -> dict[str, Any]:
    summary = comparisons(seeds)
    return {"comparisons": summary, "fidelity": fidelity(summary),
            "records": {"baseline": record(seeds, "none", optimizer), "candidate": record(seeds, "batch", optimizer)},
            "provenance": PROVENANCE, "preprocessing": PREPROCESSING, "params": PARAMS}


@pytest.fixture
def three_seeds() -> dict[str, Any]:
    return inputs([1337, 1, 2])


@pytest.fixture
def one_seed() -> dict[str, Any]:
    return inputs([1337])


@pytest.fixture
def paper_optimizer() -> dict[str, Any]:
    """Three seeds trained as Santurkar et al. trained: plain SGD at lr 0.1."""
    return inputs([1337, 1, 2], PAPER_OPTIMIZER)
