"""Training-node adapters: TrainingResult -> tables and the MLflow payload, on a tiny run."""

from __future__ import annotations

import numpy as np
import pytest

from bnstudy.pipelines.training import nodes
from bnstudy.pipelines.training.pipeline import TRAINING_OUTPUTS

ARCHITECTURE = {"conv_features": [4, 8, 8], "pool_after": [0, 2], "dense_features": [8, 8], "image_size": 8}
TRAINING = {"batch_size": 8, "epochs": 1, "eval_every": 5, "eval_batch_size": 16, "snapshot_every": 2,
            "histogram_bins": 10, "histogram_range": [-3.0, 3.0], "steps_per_chunk": 5,
            "step_loop": "scan"}  # one compiled program per model: fastest to compile for tiny nets
MEASUREMENTS = ["blog", {"preset": "paper", "measure_every": 2}]


@pytest.fixture(scope="module")
def outputs():
    rng = np.random.default_rng(0)
    train = {"images": rng.normal(size=(40, 8, 8, 3)).astype(np.float32), "labels": rng.integers(0, 10, 40).astype(np.int32)}
    test = {"images": rng.normal(size=(12, 8, 8, 3)).astype(np.float32), "labels": rng.integers(0, 10, 12).astype(np.int32)}
    return {
        normalization: dict(zip(TRAINING_OUTPUTS,
                                nodes.train_model(train, test, normalization, ARCHITECTURE, TRAINING, MEASUREMENTS),
                                strict=True))
        for normalization in ("none", "batch")
    }


def test_tables_have_one_row_per_step_layer_and_probe_point(outputs):
    out = outputs["batch"]
    layers = out["run_record"]["layers"]
    assert layers == ["conv_0", "conv_1", "conv_2", "fc1", "fc2", "out"]
    assert out["training_trace"]["step"].tolist() == list(range(5))
    assert out["eval_trace"]["step"].tolist() == [0, 5]
    ics = out["ics_trace"]
    whole = ics[ics.param == "all"]
    assert len(whole[whole.preset == "blog"]) == 5 * len(layers)
    assert sorted(whole[whole.preset == "paper"]["step"].unique()) == [0, 2, 4]
    assert {"kernel", "bias", "bn_scale", "bn_bias"} <= set(ics["param"])
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
    hist = out["activation_histograms"]
    assert hist["hist_edges"].shape == (11,)
    assert hist["layers"]["conv_1"]["hist_counts"].shape == (3, 10)
    assert hist["layers"]["conv_1"]["channel_mean"].shape == (3, 8)
    assert sorted(out["init_distance"]["step"].unique()) == [0, 2, 4, 5]


def test_baseline_state_has_no_batch_stats_and_shared_weights_start_equal(outputs):
    base, cand = outputs["none"], outputs["batch"]
    assert set(base["initial_state"]) == {"params"}
    assert set(cand["initial_state"]) == {"params", "batch_stats"}
    np.testing.assert_array_equal(base["initial_state"]["params"]["conv_2"]["conv"]["kernel"],
                                  cand["initial_state"]["params"]["conv_2"]["conv"]["kernel"])


def test_mlflow_payloads_of_both_models_have_the_same_keys(outputs):
    payloads = {
        name: nodes.model_run_payload(out["training_trace"], out["eval_trace"], out["smoothness_trace"],
                                      out["ics_trace"], out["initial_state"], out["final_state"],
                                      out["run_record"], {"metric_stride": 2})
        for name, out in outputs.items()
    }
    base, cand = payloads["none"], payloads["batch"]
    assert base["params"].keys() == cand["params"].keys()
    assert base["metric_history"].keys() == cand["metric_history"].keys()
    assert base["params"]["model.normalization"] == "none" and cand["params"]["model.normalization"] == "batch"
    assert base["metric_history"]["train_loss"]["steps"].tolist() == [0, 2, 4]  # stride 2
    assert "paper.ics_l2.conv_1" in base["metric_history"]
    assert cand["artifacts"]["final_state.npz"][:2] == b"PK"  # a zip (.npz)


def test_bad_stride_is_rejected(outputs):
    out = outputs["none"]
    with pytest.raises(ValueError, match="metric_stride must be a positive integer"):
        nodes.model_run_payload(out["training_trace"], out["eval_trace"], out["smoothness_trace"], out["ics_trace"],
                                out["initial_state"], out["final_state"], out["run_record"], {"metric_stride": 0})


def test_duplicate_measurement_names_are_rejected():
    with pytest.raises(ValueError, match="distinct names"):
        nodes.build_configs("none", ARCHITECTURE, TRAINING, ["blog", "blog"])
