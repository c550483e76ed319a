"""The learning-rate sweep's analysis (bnstudy.analysis.sweep) on synthetic traces whose
answer is known by construction: which runs are stable, each model's largest stable learning
rate (every seed, and per seed), the pair's comparison at each rate and its statement."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bnstudy.analysis import sweep

RATES = (0.01, 0.1, 0.5, 1.0)
SEEDS = (0, 1, 2)
STEPS = 40


def _model(final_losses: dict[tuple[float, int], float], diverged: set[tuple[float, int]]):
    """Traces of one swept model: each run's loss falls linearly from 2.3 to its final value
    (NaN from step 20 on where it diverged), one evaluation at the end; its run record."""
    training, evals, per_seed = [], [], {}
    for (rate, seed), final in final_losses.items():
        loss = np.linspace(2.3, final, STEPS)
        if (rate, seed) in diverged:
            loss[20:] = np.nan
        training.append(pd.DataFrame({"seed": seed, "step": np.arange(STEPS), "train_loss": loss,
                                      "learning_rate": rate}))
        evals.append(pd.DataFrame({"seed": [seed], "step": [STEPS], "test_loss": [final + 0.1],
                                   "test_accuracy": [1 - final / 3], "learning_rate": [rate]}))
        per_seed[f"{seed}/lr_{rate!r}"] = {"learning_rate": rate,
                                           "diverged_at": 20 if (rate, seed) in diverged else None}
    record = {"per_seed": per_seed, "train_config": {"learning_rate": RATES[0]}}
    return pd.concat(training, ignore_index=True), pd.concat(evals, ignore_index=True), record


@pytest.fixture(scope="module")
def analyzed():
    rng = np.random.default_rng(0)
    # No BN: trains at 0.01 and 0.1; at 0.5 seed 2 diverges, the others stay at the initial
    # loss (finite, not stable); at 1.0 every seed diverges.
    base_losses = {(r, s): {0.01: 1.5, 0.1: 1.0, 0.5: 2.4, 1.0: 2.3}[r] * math.exp(rng.normal(0, 0.02))
                   for r in RATES for s in SEEDS}
    base_diverged = {(0.5, 2)} | {(1.0, s) for s in SEEDS}
    # BN: stable everywhere but seed 1 at 1.0 (diverged); its losses half the baseline's.
    cand_losses = {(r, s): {0.01: 0.75, 0.1: 0.5, 0.5: 0.4, 1.0: 0.6}[r] * math.exp(rng.normal(0, 0.02))
                   for r in RATES for s in SEEDS}
    cand_diverged = {(1.0, 1)}
    models = {"baseline_sgd": _model(base_losses, base_diverged),
              "candidate_sgd": _model(cand_losses, cand_diverged)}
    training = {m: v[0] for m, v in models.items()}
    evals = {m: v[1] for m, v in models.items()}
    records = {m: v[2] for m, v in models.items()}
    return sweep.analyze_sweep(training, evals, records, [("baseline_sgd", "candidate_sgd")], 0.05)


def test_a_run_is_stable_when_finite_and_below_its_first_loss(analyzed):
    runs, _ = analyzed
    base = runs[runs["model"] == "baseline_sgd"].set_index(["learning_rate", "seed"])
    assert base.loc[(0.1, 0), "stable"] and not base.loc[(0.5, 0), "stable"]  # finite, did not train
    assert base.loc[(0.5, 2), "diverged"] and math.isnan(base.loc[(0.5, 2), "final_train_loss"])
    # first and final: means over the first and last 5% of 40 steps (2 steps of the fall)
    line = np.linspace(2.3, 1.0, STEPS)
    assert np.mean(line[:2]) == pytest.approx(base.loc[(0.1, 1), "first_train_loss"], rel=1e-3)
    assert np.mean(line[-2:]) == pytest.approx(base.loc[(0.1, 1), "final_train_loss"], rel=0.1)
    assert len(runs) == 2 * len(RATES) * len(SEEDS)


def test_the_largest_stable_rate_is_known(analyzed):
    _, summary = analyzed
    base, cand = summary["largest_stable"]["baseline_sgd"], summary["largest_stable"]["candidate_sgd"]
    assert base["rate"] == 0.1 and base["per_seed"] == {0: 0.1, 1: 0.1, 2: 0.1}
    # BN: 1.0 fails in seed 1 only, so every seed is stable up to 0.5; per seed 1.0, 0.5, 1.0
    assert cand["rate"] == 0.5 and cand["per_seed"] == {0: 1.0, 1: 0.5, 2: 1.0}
    assert cand["mean"] == pytest.approx((1.0 * 0.5 * 1.0) ** (1 / 3))
    assert cand["low"] < cand["mean"] < cand["high"]
    assert base["mean"] == pytest.approx(0.1) and base["low"] == pytest.approx(0.1)  # no spread


def test_the_pair_is_compared_at_each_rate_on_the_seeds_healthy_in_both(analyzed):
    _, summary = analyzed
    pair = summary["comparisons"]["candidate_sgd_vs_baseline_sgd"]
    assert pair["compared"] == 4
    assert pair["rates"]["0.01"]["estimate"] == pytest.approx(0.5, rel=0.05)
    assert pair["rates"]["0.5"]["n"] == 2  # seed 2 diverged without BN
    assert pair["rates"]["1.0"]["n"] == 0 and "estimate" not in pair["rates"]["1.0"]
    assert pair["lower"] == 3 and pair["higher"] == 0
    assert pair["only_reference_diverged"] == 1 and pair["only_treatment_diverged"] == 0


def test_the_statement_names_both_rates_their_ratio_and_the_counts(analyzed):
    _, summary = analyzed
    text = summary["comparisons"]["candidate_sgd_vs_baseline_sgd"]["statement"]
    assert "trains stably up to lr 0.5" in text and "up to lr 0.1" in text
    assert "a ratio of 5" in text
    assert "significantly lower at 3 of the 4 learning rates" in text
    assert "diverged at 1" in text


def test_a_model_stable_nowhere_is_said_so():
    runs = pd.DataFrame([{"model": "m", "learning_rate": 0.1, "seed": 0, "steps": 5,
                          "stable": False, "diverged": False}])
    entry = sweep.largest_stable(runs, "m")
    assert entry["rate"] is None and entry["untrained_at"] == [0.1] and entry["diverged_at"] == []


def test_the_statement_tells_a_run_that_diverged_from_one_that_did_not_train(analyzed):
    _, summary = analyzed
    base = summary["largest_stable"]["baseline_sgd"]
    assert base["diverged_at"] == [0.5, 1.0] and base["untrained_at"] == [0.5] and base["steps"] == STEPS
    text = summary["comparisons"]["candidate_sgd_vs_baseline_sgd"]["statement"]
    assert ("no BN (plain SGD): a seed diverged at lr 0.5, 1; a seed stayed finite but did not train "
            "within its 40 steps at lr 0.5.") in text


def test_a_run_that_spiked_and_settled_at_chance_did_not_train():
    """The cpu sweep's no-BN runs at lr 1: the loss spikes over ln 10 early, then sits at
    chance (2.303): its final loss is below its first, yet it did not train. A run that ends
    just below the stall band (ln 10 x 0.99) did; a regression has no chance level."""
    chance = math.log(10)
    assert not sweep.trained(first=2.6, final=chance)
    assert not sweep.trained(first=2.6, final=chance * 0.995)  # inside the 1% band
    assert sweep.trained(first=2.6, final=chance * 0.985)
    assert sweep.trained(first=5.0, final=chance, num_classes=None)
    assert not sweep.trained(first=2.0, final=math.nan)
    steps = np.arange(STEPS)
    loss = np.where(steps < 4, 2.7, chance)  # the spike, then chance level
    training = {"m": pd.DataFrame({"seed": 0, "step": steps, "train_loss": loss, "learning_rate": 1.0})}
    evals = {"m": pd.DataFrame({"seed": [0], "step": [STEPS], "test_loss": [chance], "test_accuracy": [0.1],
                                "learning_rate": [1.0]})}
    records = {"m": {"per_seed": {"0/lr_1.0": {"learning_rate": 1.0, "diverged_at": None}},
                     "train_config": {"learning_rate": 1.0}}}
    runs = sweep.final_runs(training, evals, records, 0.05)
    assert runs.loc[0, "final_train_loss"] < runs.loc[0, "first_train_loss"]
    assert not runs.loc[0, "stable"] and not runs.loc[0, "diverged"]
    assert sweep.largest_stable(runs, "m")["rate"] is None
