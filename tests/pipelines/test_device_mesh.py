"""``training.devices`` from ``kedro run``: the test study's run axis sharded over a device mesh
of virtual CPU devices, with no code, gives the unsharded run's outputs (issue 23, point 3)."""

from __future__ import annotations

import json

import pytest

from bnstudy.core import TrainConfig
from tests.golden.make_golden import newest
from tests.outputs import assert_same_outputs
from tests.reliability.cli_helpers import kedro_env, new_project, run_kedro

# The test study's 3 seeds over 3 of 4 virtual devices (the run count must divide by it).
DEVICES = 3
VIRTUAL = "--xla_force_host_platform_device_count=4"


def test_a_device_count_that_does_not_divide_the_runs_is_refused_with_the_fix():
    # (the preflight turns this into the parameter's message before any node runs)
    with pytest.raises(ValueError, match=r"devices \(2\) must divide the number of runs, 3 .*\[1, 3\]"):
        TrainConfig(seeds=(1, 2, 3), devices=2)
    assert TrainConfig(seeds=(1, 2), learning_rates=(0.1, 0.2), devices=4).devices == 4


@pytest.mark.slow
def test_the_study_sharded_over_devices_by_a_parameter_equals_the_unsharded_run(
        finished_study, tmp_path):
    project = new_project(tmp_path)
    env = kedro_env(project)
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {VIRTUAL}".strip()
    # per model: the roster's other models (the sweep's 2 seeds x 2 rates) do not split over 3
    params = ",".join(f"models.{model}.training.devices={DEVICES}" for model in ("baseline", "candidate"))
    result = run_kedro(project, ["run", "--env", "test", "--pipelines", "full_study",
                                 "--params", params], env, timeout_s=900)
    assert result.returncode == 0, result.terminal[-4000:]
    for model in ("baseline", "candidate"):
        record = json.loads(newest(project / "data/07_model_output" / model / "run_record.json").read_text())
        assert record["run_devices"] == DEVICES, model  # the state did live on the mesh
        assert record["parameters"]["training"]["devices"] == DEVICES
        # every trace, histogram and state against the session's unsharded study: rtol 1e-5,
        # and 1e-6 absolute for values near 0 (an activation quantile of 0.0076 came out
        # 1.2e-7 apart after 20 steps: ulps of XLA's per-device program, grown by training)
        assert assert_same_outputs(finished_study, project, model, rtol=1e-5, atol=1e-6) >= 10
    setup = newest(project / "data/08_reporting/report.md").read_text()
    assert f"runs sharded over {DEVICES} devices" in setup
