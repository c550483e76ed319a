"""The training node on a tiny run: its outputs (bnstudy.analysis.traces) and the MLflow payload
made from them (bnstudy.tracking)."""

from __future__ import annotations

import numpy as np
import pytest

from bnstudy.analysis import traces
from bnstudy.pipelines.training import nodes
from bnstudy.pipelines.training.pipeline import TRAINING_OUTPUTS
from bnstudy.runs import learning_rate_key
from bnstudy.tracking import model_run_payload

ARCHITECTURE = {"conv_features": [4, 8, 8], "pool_after": [0, 2], "dense_features": [8, 8], "image_size": 8}
TRAINING = {"batch_size": 8, "epochs": 1, "eval_every": 5, "eval_batch_size": 16, "snapshot_every": 2,
            "histogram_bins": 10, "histogram_range": [-3.0, 3.0], "steps_per_chunk": 5,
            "step_loop": "host", "seeds": [3, 7]}
MEASUREMENTS = ["blog", {"preset": "paper", "measure_every": 2}]
CHECKPOINTS = {"directory": None, "every_s": 60}


@pytest.fixture(scope="module")
def outputs():
    rng = np.random.default_rng(0)
    train = {"images": rng.normal(size=(40, 8, 8, 3)).astype(np.float32), "labels": rng.integers(0, 10, 40).astype(np.int32)}
    test = {"images": rng.normal(size=(12, 8, 8, 3)).astype(np.float32), "labels": rng.integers(0, 10, 12).astype(np.int32)}
    return {
        normalization: nodes.train_model(train, test, {"normalization": normalization}, ARCHITECTURE,
                                         TRAINING, MEASUREMENTS, CHECKPOINTS)
        for normalization in ("none", "batch")
    }


def test_outputs_are_named_and_every_table_has_a_seed_column(outputs):
    out = outputs["batch"]
    assert set(out) == set(TRAINING_OUTPUTS)
    for name in traces.TABLES:
        assert out[name].columns[0] == "seed", name
        if name != "curvature_trace":  # empty here: curvature_every is null
            assert sorted(out[name]["seed"].unique()) == [3, 7], name
    assert out["run_record"]["seeds"] == [3, 7]
    assert set(out["run_record"]["per_seed"]) == {"3", "7"}
    assert out["curvature_trace"].empty  # curvature_every is null here
    first = out["training_trace"]
    assert not np.array_equal(first[first.seed == 3]["train_loss"], first[first.seed == 7]["train_loss"])


def test_tables_have_one_row_per_step_layer_and_probe_point(outputs):
    out = {name: frame[frame.seed == 3] if name in traces.TABLES else frame
           for name, frame in outputs["batch"].items()}
    layers = out["run_record"]["layers"]
    assert layers == ["conv_0", "conv_1", "conv_2", "fc1", "fc2", "out"]
    assert out["training_trace"]["step"].tolist() == list(range(5))
    assert out["eval_trace"]["step"].tolist() == [0, 5]
    ics = out["ics_trace"]
    whole = ics[ics.param == "all"]
    assert len(whole[whole.preset == "blog"]) == 5 * len(layers)
    assert sorted(whole[whole.preset == "paper"]["step"].unique()) == [0, 2, 4]
    assert {"kernel", "bn_scale", "bn_bias"} <= set(ics["param"])
    # The bias right before BN has no effect on the loss: its per-leaf ICS is undefined, dropped.
    assert not ((ics.param == "bias") & ics.layer.str.startswith("conv")).any()
    assert (ics.param == "bias").any()  # the dense layers' biases stay
    base_ics = outputs["none"]["ics_trace"]
    assert ((base_ics.param == "bias") & (base_ics.layer == "conv_0")).any()
    probes = out["probe_trace"]
    assert len(probes[probes.preset == "blog"]) == 5 * 10  # 10 probe points in the blog preset
    assert len(probes[probes.preset == "paper"]) == 3 * 13
    smooth = out["smoothness_trace"]
    blog = smooth[smooth.preset == "blog"].set_index("step")
    per_step_max = probes[probes.preset == "blog"].groupby("step")["probe_loss"].max()
    np.testing.assert_allclose(blog["probe_loss_max"], per_step_max, rtol=1e-6)


def test_activation_outputs_cover_every_layer_and_snapshot(outputs):
    out = outputs["batch"]
    assert sorted(out["activation_stats"]["step"].unique()) == [0, 2, 4]
    assert set(out["activation_stats"]["layer"]) == set(out["run_record"]["layers"])
    assert set(out["activation_histograms"]) == {"seed_3", "seed_7"}
    hist = out["activation_histograms"]["seed_7"]
    assert hist["hist_edges"].shape == (11,)
    assert hist["layers"]["conv_1"]["hist_counts"].shape == (3, 10)
    assert hist["layers"]["conv_1"]["channel_mean"].shape == (3, 8)
    assert sorted(out["init_distance"]["step"].unique()) == [0, 2, 4, 5]


def test_baseline_state_has_no_batch_stats_and_shared_weights_start_equal(outputs):
    base, cand = outputs["none"], outputs["batch"]
    assert set(base["initial_state"]["seed_3"]) == {"params"}
    assert set(cand["initial_state"]["seed_3"]) == {"params", "batch_stats"}
    for seed in ("seed_3", "seed_7"):
        np.testing.assert_array_equal(base["initial_state"][seed]["params"]["conv_2"]["conv"]["kernel"],
                                      cand["initial_state"][seed]["params"]["conv_2"]["conv"]["kernel"])
    assert not np.array_equal(cand["initial_state"]["seed_3"]["params"]["conv_2"]["conv"]["kernel"],
                              cand["initial_state"]["seed_7"]["params"]["conv_2"]["conv"]["kernel"])


def test_mlflow_payloads_of_both_models_have_the_same_keys(outputs):
    payloads = {
        name: model_run_payload(out["training_trace"], out["eval_trace"], out["smoothness_trace"],
                                      out["ics_trace"], out["initial_state"], out["final_state"],
                                      out["run_record"], {"metric_stride": 2})
        for name, out in outputs.items()
    }
    base, cand = payloads["none"], payloads["batch"]
    assert base["params"].keys() == cand["params"].keys()
    assert base["metric_history"].keys() == cand["metric_history"].keys()
    assert base["params"]["normalization"] == "none" and cand["params"]["normalization"] == "batch"
    assert base["params"]["training.batch_size"] == cand["params"]["training.batch_size"] == 8
    assert base["metric_history"]["train_loss"]["steps"].tolist() == [0, 2, 4]  # stride 2
    assert "paper/ics_l2/conv_1" in base["metric_history"]
    assert {"seed_3/train_loss", "seed_7/test_accuracy"} <= base["metric_history"].keys()
    # only the headline histories go without a prefix (docs/tracking.md)
    assert {k for k in base["metric_history"] if "/" not in k} == {
        "train_loss", "train_accuracy", "test_loss", "test_accuracy"}
    trace = outputs["none"]["training_trace"]
    np.testing.assert_allclose(base["metric_history"]["train_loss"]["values"][1],
                               trace[trace.step == 2]["train_loss"].mean(), rtol=1e-6)
    assert base["metrics"]["run/num_seeds"] == 2.0
    assert cand["artifacts"]["final_state.npz"][:2] == b"PK"  # a zip (.npz)


def test_bad_stride_is_rejected(outputs):
    out = outputs["none"]
    with pytest.raises(ValueError, match="metric_stride must be a positive integer"):
        model_run_payload(out["training_trace"], out["eval_trace"], out["smoothness_trace"], out["ics_trace"],
                                out["initial_state"], out["final_state"], out["run_record"], {"metric_stride": 0})


def test_duplicate_measurement_names_are_rejected():
    from bnstudy.parameters import model_configs

    with pytest.raises(ValueError, match="distinct names"):
        model_configs({"normalization": "none", "architecture": ARCHITECTURE, "training": TRAINING,
                       "measurements": ["blog", "blog"], "checkpoints": CHECKPOINTS})


def test_the_node_uses_the_configs_the_preflight_built():
    """Validation happens once: the configs of settings validated before are found, not built
    again (the same object), and settings not seen before are built and kept."""
    from bnstudy.parameters import model_configs, model_parameters

    settings = {"normalization": "batch", "architecture": ARCHITECTURE,
                "training": {**TRAINING, "seeds": [11]}, "measurements": ["paper"],
                "checkpoints": CHECKPOINTS}
    checked = model_parameters("models.candidate", settings)  # as validate_parameters does
    assert model_configs(dict(settings)) is checked
    assert model_configs({**settings, "training": {**TRAINING, "seeds": [12]}}) is not checked


def test_curvature_trace_has_a_row_per_measurement_with_integer_iterations():
    """The core's curvature record as a table (tests/core/test_curvature.py and the
    beyond_study session test cover its values)."""
    from bnstudy.core.curvature import CURVATURE_FIELDS

    values = {field: np.array([1.5, 2.5]) for field in CURVATURE_FIELDS}
    values.update(power_iterations=np.array([12.0, 7.0]), converged=np.array([1.0, 0.0]))
    result = type("Result", (), {"curvature": {"steps": np.array([0, 10]), **values}})()
    table = traces.curvature_trace(result)
    assert table.columns.tolist() == list(traces.CURVATURE_COLUMNS)
    assert table["step"].tolist() == [0, 10] and table["power_iterations"].tolist() == [12, 7]
    assert table["power_iterations"].dtype == "Int64"
    assert table["converged"].tolist() == [True, False]
    # a seed that diverged before the second measurement: NaN in the core's record (the
    # divergence study once failed here casting NaN to int64, and NaN cast to bool is True)
    values.update(lambda_max=np.array([1.5, np.nan]), power_iterations=np.array([12.0, np.nan]),
                  converged=np.array([1.0, np.nan]))
    diverged = traces.curvature_trace(type("Result", (), {"curvature": {"steps": np.array([0, 10]),
                                                                          **values}})())
    assert diverged["power_iterations"].iloc[0] == 12 and diverged["power_iterations"].isna().tolist() == [False, True]
    assert diverged["converged"].iloc[0] and diverged["converged"].isna().tolist() == [False, True]
    assert np.isnan(diverged["lambda_max"].iloc[1])
    empty = traces.curvature_trace(type("Result", (), {"curvature": {}})())
    assert empty.empty and empty.columns.tolist() == list(traces.CURVATURE_COLUMNS)


@pytest.fixture(scope="module")
def sweep_outputs():
    """Two seeds x two learning rates of the BN model (5 plain steps, one snapshot)."""
    rng = np.random.default_rng(0)
    train = {"images": rng.normal(size=(40, 8, 8, 3)).astype(np.float32), "labels": rng.integers(0, 10, 40).astype(np.int32)}
    test = {"images": rng.normal(size=(12, 8, 8, 3)).astype(np.float32), "labels": rng.integers(0, 10, 12).astype(np.int32)}
    training = {**TRAINING, "learning_rates": [0.01, 0.05], "snapshot_every": 5}
    return nodes.train_model(train, test, {"normalization": "batch"}, ARCHITECTURE, training,
                             [{"preset": "paper", "measure_every": 5}], CHECKPOINTS)


def test_every_table_has_a_learning_rate_column_right_after_the_seed(outputs, sweep_outputs):
    for name in traces.TABLES:
        assert outputs["batch"][name].columns[:2].tolist() == ["seed", "learning_rate"], name
        assert sweep_outputs[name].columns[:2].tolist() == ["seed", "learning_rate"], name
    assert set(outputs["batch"]["training_trace"]["learning_rate"]) == {0.035}
    trace = sweep_outputs["training_trace"]
    pairs = trace.groupby(["seed", "learning_rate"]).size()
    assert pairs.to_dict() == {(3, 0.01): 5, (3, 0.05): 5, (7, 0.01): 5, (7, 0.05): 5}
    loss = trace.set_index(["seed", "learning_rate", "step"])["train_loss"]
    assert loss[3, 0.01, 0] == loss[3, 0.05, 0]  # same seed: same W_0, same first batch
    assert loss[3, 0.01, 4] != loss[3, 0.05, 4]


def test_a_sweeps_states_and_record_are_keyed_by_seed_and_learning_rate(sweep_outputs):
    from bnstudy.datasets.npz_dataset import flatten_tree, unflatten_tree

    out = sweep_outputs
    for name in ("initial_state", "final_state", "activation_histograms"):
        assert {seed: sorted(rates) for seed, rates in out[name].items()} == {
            "seed_3": ["lr_0.01", "lr_0.05"], "seed_7": ["lr_0.01", "lr_0.05"]}, name
    flat = flatten_tree(out["final_state"])  # .npz-safe keys, read back as they were
    assert "seed_3/lr_0.05/params/out/kernel" in flat
    np.testing.assert_array_equal(unflatten_tree(flat)["seed_3"]["lr_0.05"]["params"]["out"]["kernel"],
                                  out["final_state"]["seed_3"]["lr_0.05"]["params"]["out"]["kernel"])
    start = out["initial_state"]["seed_3"]
    np.testing.assert_array_equal(start["lr_0.01"]["params"]["out"]["kernel"],
                                  start["lr_0.05"]["params"]["out"]["kernel"])
    record = out["run_record"]
    assert record["seeds"] == [3, 7] and record["learning_rates"] == [0.01, 0.05]
    assert record["train_config"]["learning_rates"] == [0.01, 0.05]
    assert record["train_config"]["seeds"] == [3, 7]
    assert set(record["per_seed"]) == {"3/lr_0.01", "3/lr_0.05", "7/lr_0.01", "7/lr_0.05"}
    assert record["per_seed"]["7/lr_0.05"]["learning_rate"] == 0.05


def test_a_single_learning_rate_keeps_the_seed_keys(outputs):
    out = outputs["batch"]
    assert set(out["final_state"]) == {"seed_3", "seed_7"} and "params" in out["final_state"]["seed_3"]
    assert out["run_record"]["learning_rates"] == [0.035]
    assert out["run_record"]["train_config"]["learning_rates"] is None
    assert out["run_record"]["per_seed"]["3"]["learning_rate"] == 0.035


def test_learning_rate_keys_are_distinct_and_file_safe():
    keys = [learning_rate_key(rate) for rate in (0.035, 1e-05, 1e16, 0.1, 0.1 + 1e-18, 0.1 + 2e-17)]
    assert keys[:3] == ["lr_0.035", "lr_1e-05", "lr_1e+16"]
    assert keys[3] == keys[4] != keys[5]  # 0.1 + 1e-18 is the float 0.1; 0.1 + 2e-17 is not
    assert len(set(keys)) == len(keys) - 1
    assert all(set(key) <= set("lr_0123456789.e+-") for key in keys)


def test_a_sweeps_mlflow_histories_are_per_seed_and_learning_rate(sweep_outputs):
    """Each (seed, learning rate) pair has its own history under seed_<k>/lr_<x>/, equal to
    its rows of the trace; the headline is the mean over the four runs."""
    out = sweep_outputs
    payload = model_run_payload(out["training_trace"], out["eval_trace"], out["smoothness_trace"],
                                out["ics_trace"], out["initial_state"], out["final_state"],
                                out["run_record"], {"metric_stride": 1})
    history = payload["metric_history"]
    runs = {f"seed_{seed}/lr_{rate!r}" for seed in (3, 7) for rate in (0.01, 0.05)}
    assert {key.rsplit("/", 1)[0] for key in history if key.startswith("seed_")} == runs
    trace = out["training_trace"]
    own = trace[(trace.seed == 7) & (trace.learning_rate == 0.05)]
    np.testing.assert_array_equal(history["seed_7/lr_0.05/train_loss"]["values"], own["train_loss"])
    np.testing.assert_allclose(history["train_loss"]["values"],
                               trace.groupby("step")["train_loss"].mean(), rtol=1e-6)
    assert {"seed_3/lr_0.01/final_test_accuracy", "seed_7/lr_0.05/final_test_accuracy"} <= \
        payload["metrics"].keys()
    assert payload["params"]["training.learning_rates"] == [0.01, 0.05]


def test_a_diverged_pair_of_a_sweep_leaves_its_seeds_other_rate_in_the_means(sweep_outputs):
    """One (seed, learning rate) pair diverged at step 2: only that run leaves the means and
    its own history stops there; the same seed at the other rate stays in."""
    from bnstudy.tracking import diverged_runs, healthy_runs

    out = {name: frame.copy() if hasattr(frame, "copy") else frame
           for name, frame in sweep_outputs.items()}
    for name in ("training_trace", "eval_trace", "smoothness_trace", "ics_trace"):
        frame = out[name]
        pair = (frame.seed == 3) & (frame.learning_rate == 0.05)
        frame.loc[pair, "diverged_at"] = 2
    frame = out["training_trace"]
    broken = (frame.seed == 3) & (frame.learning_rate == 0.05) & (frame.step >= 2)
    frame.loc[broken, "train_loss"] = np.nan
    assert diverged_runs(frame) == {(3, 0.05): 2}
    kept = healthy_runs(frame, diverged_runs(frame))
    assert sorted(set(zip(kept.seed, kept.learning_rate))) == [(3, 0.01), (7, 0.01), (7, 0.05)]
    payload = model_run_payload(out["training_trace"], out["eval_trace"], out["smoothness_trace"],
                                out["ics_trace"], out["initial_state"], out["final_state"],
                                out["run_record"], {"metric_stride": 1})
    assert payload["metric_history"]["seed_3/lr_0.05/train_loss"]["steps"].tolist() == [0, 1]
    assert payload["metric_history"]["seed_3/lr_0.01/train_loss"]["steps"].tolist() == list(range(5))
    np.testing.assert_allclose(payload["metric_history"]["train_loss"]["values"],
                               kept.groupby("step")["train_loss"].mean(), rtol=1e-6)
    assert payload["metrics"]["run/num_diverged_seeds"] == 1.0


def test_each_model_run_is_opened_and_ended_by_its_own_training_node():
    """The node that reads ``<model>.mlflow_live`` (opening the model's MLflow run) also
    writes ``<model>.mlflow_run`` (ending it): a run ends when its own training does, not
    when the last model's training does (a separate payload node sat a level later)."""
    from bnstudy.pipelines.training.pipeline import namespaced

    pipeline = namespaced(("baseline", "candidate", "candidate_l1"))
    for model in ("baseline", "candidate", "candidate_l1"):
        (opener,) = [n for n in pipeline.nodes if f"{model}.mlflow_live" in n.inputs]
        assert f"{model}.mlflow_run" in opener.outputs, model
    order = [n.name for n in pipeline.nodes if n.name.endswith("train_model_node")]
    assert order == ["baseline.train_model_node", "candidate.train_model_node",
                     "candidate_l1.train_model_node"]


def test_a_models_namespace_has_one_output_its_results_so_kedro_viz_draws_it_as_one_box():
    """kedro-viz (12.x, ``ModularPipelinesRepository.populate_tree``) draws inside a
    namespace's box every dataset that is made and read only inside it, and outside every
    "free output": one that nothing reads, or that a node outside reads. In a whole study,
    each model's only free output is ``<model>.results``; its traces, states, run record and
    MLflow run are inside."""
    from bnstudy.pipeline_registry import register_pipelines
    from bnstudy.pipelines.training.pipeline import TRAINING_OUTPUTS

    pipeline = register_pipelines()["full_study"]
    for model in ("baseline", "candidate"):
        inside = pipeline.only_nodes_with_namespaces([model])
        rest = pipeline - inside
        free = inside.outputs() | (rest.inputs() & inside.all_outputs())
        assert free == {f"{model}.results"}, model
        internal = inside.all_outputs() - free
        assert internal == {f"{model}.{name}" for name in (*TRAINING_OUTPUTS, "mlflow_run")}
        assert not any(name.startswith(f"{model}.") and name != f"{model}.results"
                       for name in rest.inputs()), "nothing outside reads a model's traces"
