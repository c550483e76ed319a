"""The engine: compiles once, deterministic, seeds as an axis, one plan, measurements never
change training."""

from __future__ import annotations

import dataclasses
import logging
import re
import threading

import jax
import numpy as np
import pytest

from bnstudy.core import (
    COMPILE_COUNTS,
    PRESETS,
    TINY_MODEL_CONFIG,
    TINY_TRAIN_CONFIG,
    MeasurementPlan,
    PureModel,
    Spec,
    cross_entropy,
    init_state,
    train,
    train_seeds,
    train_step,
)
from bnstudy.core.executor import ICS_POINTS, split_points
from bnstudy.core.programs import lowered
from bnstudy.core.step import batch_of, model_of
from bnstudy.core.training import epoch_permutations
from tests.core.conftest import on_four_devices

BOTH = [PRESETS["blog"], PRESETS["paper"]]


@pytest.fixture(scope="module")
def measured(tiny_arrays):
    return train(TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, BOTH, *tiny_arrays)


def test_result_shapes_and_steps(measured):
    layers, leaves = 6, 18 - 3  # the 3 conv biases before BN are dropped (undefined ICS)
    assert measured.layers == ["conv_0", "conv_1", "conv_2", "fc1", "fc2", "out"]
    np.testing.assert_array_equal(measured.steps, np.arange(10))  # 2 epochs of 5 batches
    assert measured.train_loss.shape == measured.train_accuracy.shape == (10,)
    np.testing.assert_array_equal(measured.eval_steps, [0, 4, 8, 10])
    for name, preset in (("blog", PRESETS["blog"]), ("paper", PRESETS["paper"])):
        m = measured.measurements[name]
        s = len(preset.probe_s)
        assert m["ics_l2"].shape == m["ics_cosine"].shape == (10, layers)
        assert len(m["ics_l2_leaf"]) == len(m["ics_cosine_leaf"]) == leaves
        assert m["ics_l2_leaf"]["conv_1/bn_scale"].shape == (10,)
        assert m["probe_loss"].shape == m["grad_diff"].shape == (10, s)
        assert m["beta_smoothness"].shape == (10,)
        assert np.all(np.isfinite(m["probe_loss"])) and np.all(np.isfinite(m["ics_l2"]))
    conv_1 = measured.activation_stats["layers"]["conv_1"]
    assert conv_1["hist_counts"].shape == (4, 10) and conv_1["channel_var"].shape == (4, 8)
    assert measured.activation_stats["hist_edges"].shape == (11,)


def test_conv_0_ics_is_zero_in_train_mode_only(measured):
    paper, blog = measured.measurements["paper"], measured.measurements["blog"]
    # G' of the first layer is G itself in train mode (float32 rounding at most).
    assert np.all(paper["ics_l2"][:, 0] <= 1e-5 * paper["ics_l2"][:, 1:].max(axis=1))
    np.testing.assert_allclose(paper["ics_cosine"][:, 0], 1.0, atol=1e-6)
    # In eval mode G' uses the running statistics: not G.
    assert np.all(blog["ics_l2"][:, 0] > 1e-2 * blog["ics_l2"][:, 1:].max(axis=1))


def test_measurements_do_not_change_the_trajectory(measured, tiny_arrays):
    plain = train(TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, [], *tiny_arrays, snapshots=False)
    assert plain.measurements == {} and plain.activation_stats == {}
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9),
                 measured.final_params, plain.final_params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9),
                 measured.final_batch_stats, plain.final_batch_stats)
    np.testing.assert_allclose(measured.train_loss, plain.train_loss, rtol=1e-6)




def test_compiles_once_per_configuration_and_is_deterministic(measured, tiny_arrays):
    before = dict(COMPILE_COUNTS)
    again = train(TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, BOTH, *tiny_arrays)
    other_seed = train(TINY_MODEL_CONFIG, dataclasses.replace(TINY_TRAIN_CONFIG, seed=7,
                                                              max_steps=7), BOTH, *tiny_arrays)
    assert dict(COMPILE_COUNTS) == before  # 3 chunks per run, new seed and length: no compile
    assert before.get("measured_step", 0) >= 1
    jax.tree.map(np.testing.assert_array_equal, again.measurements, measured.measurements)
    jax.tree.map(np.testing.assert_array_equal, again.final_params, measured.final_params)
    np.testing.assert_array_equal(again.test_accuracy, measured.test_accuracy)
    assert other_seed.steps.shape == (7,)
    assert not np.array_equal(other_seed.initial_params["out"]["kernel"],
                              measured.initial_params["out"]["kernel"])


@pytest.mark.parametrize("loop", ["scan", "host"])
def test_the_executor_compiles_once_per_configuration(tiny_arrays, loop):
    # a histogram range of its own: a program key (ProgramConfig) no other test compiles
    config = dataclasses.replace(TINY_TRAIN_CONFIG, histogram_range=(-2.5, 2.5), step_loop=loop)
    key = "scan_chunk" if loop == "scan" else "train_step"
    before = dict(COMPILE_COUNTS)
    result = train(TINY_MODEL_CONFIG, config, [], *tiny_arrays, snapshots=False)
    assert COMPILE_COUNTS[key] == before.get(key, 0) + 1  # 3 chunks, the last half empty
    assert len(result.steps) == 10
    other = train(TINY_MODEL_CONFIG, dataclasses.replace(
        config, seed=5, max_steps=6, learning_rate=0.013, momentum=0.5), [], *tiny_arrays,
        snapshots=False)
    # another seed, length, learning rate and momentum (state leaves): cached
    assert COMPILE_COUNTS[key] == before.get(key, 0) + 1
    assert other.learning_rate == 0.013 and not np.allclose(other.train_loss[1:6],
                                                            result.train_loss[1:6])


@pytest.mark.slow  # 20 s: a program key of its own compiles every host program anew
def test_host_loop_compiles_each_program_once(tiny_arrays):
    """The measured host loop: one program per distinct (layer, mode), none rebuilt later
    (not for another seed, length or learning rate either)."""
    config = dataclasses.replace(TINY_TRAIN_CONFIG, histogram_range=(-3.5, 3.5))
    sparse = dataclasses.replace(PRESETS["paper"], measure_every=3)
    before = dict(COMPILE_COUNTS)
    result = train(TINY_MODEL_CONFIG, config, [PRESETS["blog"], sparse], *tiny_arrays)
    paper = result.measurements["paper"]
    np.testing.assert_array_equal(paper["measured_steps"], [0, 3, 6, 9])
    assert np.all(np.isfinite(paper["ics_l2"])) and np.all(np.isfinite(paper["grad_diff"]))
    np.testing.assert_array_equal(result.activation_stats["steps"], [0, 3, 6, 9])
    first = {k: v - before.get(k, 0) for k, v in COMPILE_COUNTS.items() if v != before.get(k, 0)}
    # 3 convs with BN (train and eval mode differ) and 3 dense layers (one program each).
    assert first == {"measured_step": 1, "snapshot": 1, "evaluate": 1,
                     "layer_forward": 3 * 2 + 3, "layer_input_cotangent": 2 * 2 + 3,
                     "layer_param_gradient": 3 * 2 + 3, "loss_cotangent": 1,
                     "ics_compare": 1, "probe_point": 2, "probe_summary": 2}
    after_first = dict(COMPILE_COUNTS)
    train(TINY_MODEL_CONFIG, dataclasses.replace(config, seed=3, max_steps=9, learning_rate=0.02),
          [sparse, PRESETS["blog"]], *tiny_arrays)
    assert dict(COMPILE_COUNTS) == after_first


def test_baseline_plans_one_ics_for_both_modes():
    """Without BN, train and eval mode coincide: one ICS computation for both presets."""
    baseline = dataclasses.replace(TINY_MODEL_CONFIG, normalization="none")
    config = dataclasses.replace(TINY_TRAIN_CONFIG, max_steps=4)
    plan = MeasurementPlan.build(baseline, config, BOTH, 4)
    assert [c.name for c in plan.computations if c.kind == "ics"] == ["ics_train"]


@pytest.mark.slow  # compiles the baseline's measurement programs (about 20 s on two cores)
def test_baseline_shares_the_ics_of_both_modes(tiny_arrays):
    """... and both presets report that one computation's values."""
    baseline = dataclasses.replace(TINY_MODEL_CONFIG, normalization="none")
    config = dataclasses.replace(TINY_TRAIN_CONFIG, max_steps=4)
    result = train(baseline, config, BOTH, *tiny_arrays)
    np.testing.assert_array_equal(result.measurements["blog"]["ics_l2"],
                                  result.measurements["paper"]["ics_l2"])


def _probe_threads() -> list[str]:
    """The names of the live worker threads of executors (``bnstudy-probes_<n>``)."""
    return [t.name for t in threading.enumerate() if t.name.startswith("bnstudy-probes")]


def test_probes_on_the_worker_thread_give_identical_results(measured, tiny_arrays):
    """About half the probe points run on the executor's own worker thread (compiled
    executables never trace, so no JAX setting has to be copied): bit-for-bit the values of
    one thread. The thread lives while the run does, and the executor closes it."""
    seen = []
    alone = train(TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, BOTH, *tiny_arrays,
                  concurrent_probes=False, progress=lambda *_: seen.append(_probe_threads()))
    assert seen == [[], [], []]  # 3 chunks, no worker
    jax.tree.map(np.testing.assert_array_equal, alone.measurements, measured.measurements)
    np.testing.assert_array_equal(alone.train_loss, measured.train_loss)
    seen.clear()
    threaded = train(TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, BOTH, *tiny_arrays,
                     progress=lambda *_: seen.append(_probe_threads()))
    assert [len(names) for names in seen] == [1, 1, 1]  # one worker, through the whole run
    assert _probe_threads() == []  # closed with the executor
    jax.tree.map(np.testing.assert_array_equal, threaded.measurements, measured.measurements)


def test_the_worker_takes_about_half_of_a_steps_work():
    """The worker takes the first points of a step, about half of its work: the main thread
    keeps the rest and every ICS computation, which weighs ICS_POINTS points."""
    plan = MeasurementPlan.build(TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, BOTH, 10)
    points = sum(len(c.probe_s) for c in plan.computations if c.kind == "probe")
    ics = sum(c.kind == "ics" for c in plan.computations)
    assert (points, ics) == (23, 2)  # 13 paper + 10 blog points, the 2 ICS modes
    on_worker, on_main = split_points(list(range(points)), ics)
    assert on_worker == list(range(14)) and on_main == list(range(14, 23))  # 14 | 9 + 2 * 3
    for count in range(12):
        for modes in range(3):
            on_worker, on_main = split_points(list(range(count)), modes)
            assert on_worker + on_main == list(range(count))
            main_work = len(on_main) + ICS_POINTS * modes
            assert abs(len(on_worker) - main_work) <= 1 or len(on_worker) == count < main_work


# Two probe points keep the scan program (every measurement inlined) quick to compile.
FEW_POINTS = dataclasses.replace(PRESETS["paper"], measure_every=2, probe_max=1.0)


@pytest.mark.slow  # compiles the whole measured step as one program (minutes on 2 cores)
def test_scan_and_host_loops_agree_with_seeds_vmapped(tiny_arrays):
    config = dataclasses.replace(TINY_TRAIN_CONFIG, learning_rate=0.01, seeds=(1, 2),
                                 max_steps=6)
    paper = [FEW_POINTS]
    assert len(FEW_POINTS.probe_s) == 2
    scan, host = (train_seeds(TINY_MODEL_CONFIG, dataclasses.replace(config, step_loop=loop),
                              paper, *tiny_arrays) for loop in ("scan", "host"))
    for a, b in zip(scan, host, strict=True):
        jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-7),
                     a.final_params, b.final_params)
        np.testing.assert_allclose(a.train_loss, b.train_loss, rtol=1e-5)
        # atol 1e-6: conv_0's train-mode ICS is rounding noise of ~1e-7 (G' = G exactly)
        for key in ("ics_l2", "probe_loss", "grad_diff", "beta_smoothness"):
            np.testing.assert_allclose(a.measurements["paper"][key],
                                       b.measurements["paper"][key], rtol=1e-4, atol=1e-6)


def _trace_columns(result):
    paper = result.measurements["paper"]
    return {"train_loss": result.train_loss, "train_accuracy": result.train_accuracy,
            "test_loss": result.test_loss, "test_accuracy": result.test_accuracy,
            **{k: paper[k] for k in ("ics_l2", "ics_cosine", "probe_loss", "grad_diff",
                                     "beta_smoothness", "grad_norm")},
            "init_distance": result.init_distance["abs"]["conv_1"],
            "activation_mean": result.activation_stats["layers"]["conv_1"]["mean"]}


def test_seed_k_of_a_multi_seed_run_equals_the_single_seed_run(tiny_arrays):
    config = dataclasses.replace(TINY_TRAIN_CONFIG, max_steps=6)
    paper = [dataclasses.replace(PRESETS["paper"], measure_every=2)]
    together = train_seeds(TINY_MODEL_CONFIG, dataclasses.replace(config, seeds=(11, 12, 13)),
                           paper, *tiny_arrays)
    assert [r.seed for r in together] == [11, 12, 13]
    for result in together:
        alone = train(TINY_MODEL_CONFIG, dataclasses.replace(config, seed=result.seed), paper,
                      *tiny_arrays)
        for name, column in _trace_columns(alone).items():
            np.testing.assert_allclose(_trace_columns(result)[name], column, rtol=1e-5,
                                       atol=1e-7, err_msg=name)
    assert not np.allclose(together[0].train_loss, together[1].train_loss)


@pytest.mark.parametrize("every", [2, 3])
def test_the_plan_alone_decides_which_steps_are_measured(tiny_arrays, every):
    preset = dataclasses.replace(PRESETS["paper"], measure_every=every)
    config = dataclasses.replace(TINY_TRAIN_CONFIG, max_steps=7, snapshot_every=every + 1)
    plan = MeasurementPlan.build(TINY_MODEL_CONFIG, config, [preset], 7)
    expected = list(range(0, 7, every))
    assert plan.measured_steps(preset).tolist() == expected
    assert np.flatnonzero(plan.due_mask(np.arange(7), TINY_MODEL_CONFIG).any(axis=1)).tolist() \
        == expected
    result = train(TINY_MODEL_CONFIG, config, [preset], *tiny_arrays)
    measured = result.measurements["paper"]
    assert measured["measured_steps"].tolist() == expected
    for key in ("ics_l2", "probe_loss", "beta_smoothness", "grad_norm"):
        assert len(measured[key]) == len(expected)
        assert np.all(np.isfinite(measured[key]))
    assert result.activation_stats["steps"].tolist() == list(range(0, 7, every + 1))


def test_train_step_is_the_pure_step_the_executor_runs(tiny_arrays):
    """Three pure ``train_step`` calls on the executor's batches give the run's losses and
    final weights."""
    config = dataclasses.replace(TINY_TRAIN_CONFIG, max_steps=3)
    result = train(TINY_MODEL_CONFIG, config, [], *tiny_arrays, snapshots=False)
    spec = Spec.of(TINY_MODEL_CONFIG, config)
    state = init_state(model_of(TINY_MODEL_CONFIG), config, config.seed)
    order = epoch_permutations(jax.random.wrap_key_data(state.data_key), 1, 40)
    step = jax.jit(lambda s, b: train_step(spec, s, b))
    losses = []
    for _ in range(3):
        state, metrics = step(state, batch_of(spec, jax.numpy.asarray(tiny_arrays[0]),
                                              jax.numpy.asarray(tiny_arrays[1]), order,
                                              state.step))
        losses.append(float(metrics["train_loss"]))
    assert int(state.step) == 3
    np.testing.assert_allclose(losses, result.train_loss, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8),
                 jax.device_get(state.params), result.final_params)


SHARDED_RUN = """
import dataclasses, numpy as np, jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from bnstudy.core import PRESETS, TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, train_seeds
from tests.core.conftest import tiny_data
assert jax.device_count() == 4, jax.devices()
config = dataclasses.replace(TINY_TRAIN_CONFIG, seeds=(1, 2, 3, 4), max_steps=4,
                             step_loop="scan")
paper = [dataclasses.replace(PRESETS["paper"], measure_every=2, probe_max=1.0)]
mesh = Mesh(np.array(jax.devices()), ("seed",))
shard = lambda tree: jax.device_put(tree, NamedSharding(mesh, PartitionSpec("seed")))
data = tiny_data()
sharded = train_seeds(TINY_MODEL_CONFIG, config, paper, *data, shard=shard)
plain = train_seeds(TINY_MODEL_CONFIG, config, paper, *data)
for a, b in zip(sharded, plain, strict=True):
    np.testing.assert_allclose(a.train_loss, b.train_loss, rtol=1e-5)
    np.testing.assert_allclose(a.measurements["paper"]["ics_l2"],
                               b.measurements["paper"]["ics_l2"], rtol=1e-5, atol=1e-7)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-7),
                 a.final_params, b.final_params)
print("SHARDED-EQUAL", len(sharded))
"""


@pytest.mark.slow  # a subprocess with 4 virtual devices compiles the scan program twice
def test_seeds_sharded_over_four_devices_equal_the_unsharded_run():
    assert "SHARDED-EQUAL 4" in on_four_devices(SHARDED_RUN, timeout_s=900)


def test_cadence_measures_the_same_values_on_fewer_steps(measured, tiny_arrays):
    sparse = dataclasses.replace(PRESETS["paper"], measure_every=3)
    result = train(TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, [sparse, PRESETS["blog"]], *tiny_arrays)
    got, every = result.measurements["paper"], measured.measurements["paper"]
    np.testing.assert_array_equal(got["measured_steps"], [0, 3, 6, 9])
    for key in ("ics_l2", "probe_loss", "grad_diff", "beta_smoothness"):
        np.testing.assert_allclose(got[key], every[key][[0, 3, 6, 9]], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(result.measurements["blog"]["measured_steps"], np.arange(10))


def test_test_set_evaluation_is_exact_with_a_partial_batch(measured, tiny_arrays):
    _, _, x_test, y_test = tiny_arrays  # 21 examples, batches of 16: the last has 5
    model = PureModel(TINY_MODEL_CONFIG)
    logits = model.apply(measured.final_params, measured.final_batch_stats, x_test,
                         train=False).logits
    np.testing.assert_allclose(measured.test_loss[-1], cross_entropy(logits, y_test), rtol=1e-5)
    assert measured.test_accuracy[-1] == np.mean(np.argmax(logits, -1) == y_test)


def test_progress_is_called_once_per_chunk(tiny_arrays):
    calls = []
    train(TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, [], *tiny_arrays, snapshots=False,
          progress=lambda done, total, metrics: calls.append((done, total, sorted(metrics))))
    assert [c[:2] for c in calls] == [(4, 10), (8, 10), (10, 10)]
    assert "test_accuracy" in calls[-1][2] and "train_loss" in calls[0][2]


def test_progress_is_a_bar_on_a_terminal_and_a_log_line_per_chunk_elsewhere(
        tiny_arrays, monkeypatch, capsys, caplog):
    from bnstudy.core import training as driver

    def run_logged() -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="bnstudy.core.training"):
            train(TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, [], *tiny_arrays, snapshots=False)
        return [r.getMessage() for r in caplog.records if "] step " in r.getMessage()]

    monkeypatch.setattr(driver, "_interactive", lambda: False)  # no TTY: a line per chunk
    lines = run_logged()
    assert [line.split("] step ")[1].split()[0] for line in lines] == ["4/10", "8/10", "10/10"]
    assert lines[0].startswith("[normalization=batch, 1 seed] step 4/10 train_loss ")
    capsys.readouterr()
    monkeypatch.setattr(driver, "_interactive", lambda: True)  # a terminal: one bar instead
    assert run_logged() == []
    bar = capsys.readouterr().err
    assert "normalization=batch, 1 seed" in bar and "10/10" in bar and "step/s" in bar
    assert "test_accuracy=" in bar


def test_bad_inputs_raise_helpful_errors(tiny_arrays):
    x, y, xt, yt = tiny_arrays
    with pytest.raises(ValueError, match=r"x_train must have shape \[N, 8, 8, 3\]"):
        train(TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, [], x[:, :4], y, xt, yt)
    with pytest.raises(ValueError, match="names must be unique"):
        train(TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, [PRESETS["blog"]] * 2, x, y, xt, yt)
    with pytest.raises(ValueError, match="call train_seeds"):
        train(TINY_MODEL_CONFIG, dataclasses.replace(TINY_TRAIN_CONFIG, seeds=(1, 2)), [],
              x, y, xt, yt)
    with pytest.raises(ValueError, match=r"learning_rates \(0.1, 0.2\); call train_seeds"):
        train(TINY_MODEL_CONFIG, dataclasses.replace(TINY_TRAIN_CONFIG, learning_rates=(0.1, 0.2)),
              [], x, y, xt, yt)
    with pytest.raises(ValueError, match="seeds must be distinct"):
        dataclasses.replace(TINY_TRAIN_CONFIG, seeds=(1, 1))


@pytest.mark.parametrize(("precision", "marker"), [("highest", "HIGHEST"), ("bfloat16", "DEFAULT")])
def test_programs_carry_their_matmul_precision_whoever_calls_them(precision, marker):
    """Every program lowers with TrainConfig.matmul_precision even when called outside any
    ``jax.default_matmul_precision`` context: otherwise a GPU would run float32 in TF32."""
    config = dataclasses.replace(TINY_TRAIN_CONFIG, matmul_precision=precision)
    spec = Spec.of(TINY_MODEL_CONFIG, config)
    state = init_state(model_of(TINY_MODEL_CONFIG), config, 0)
    x = jax.ShapeDtypeStruct((config.batch_size, 8, 8, 3), np.float32)
    y = jax.ShapeDtypeStruct((config.batch_size,), np.int32)
    text = lowered(train_step, spec, (state, (x, y))).as_text()
    # every conv and dense dot, forward and backward, asks for the configured precision
    assert set(re.findall(r"precision ([A-Z]+)", text)) == {marker}
    assert text.count(f"precision {marker}") >= 2 * 6


@pytest.mark.slow  # compiles two scan programs
def test_scan_programs_of_different_plans_are_not_shared(tiny_arrays):
    """The scan program's cache key includes the plan's computations and snapshot setting:
    the same shapes with another plan compile anew (a shared program lacked outputs)."""
    config = dataclasses.replace(TINY_TRAIN_CONFIG, step_loop="scan", max_steps=4,
                                 learning_rate=0.017)
    plain = train(TINY_MODEL_CONFIG, config, [FEW_POINTS], *tiny_arrays, snapshots=False)
    assert plain.activation_stats == {}
    with_snapshots = train(TINY_MODEL_CONFIG, config, [FEW_POINTS], *tiny_arrays)
    assert with_snapshots.activation_stats["steps"].tolist() == [0, 3]
    np.testing.assert_array_equal(plain.train_loss, with_snapshots.train_loss)


def test_the_recorder_keeps_the_snapshot_rows_of_the_snapshot_steps_only():
    """A chunk's snapshot outputs are placeholders at the steps without a snapshot: only the
    snapshot steps' rows are kept (the paper-scale DLN's would otherwise take gigabytes), in
    order, and every other output keeps all its steps."""
    from bnstudy.core.recorder import Recorder

    steps = np.arange(6)
    outputs = {"train_loss": np.stack([steps, 10 + steps]).astype(np.float32),
               "snapshot": {"activations": {"x": {"mean": np.stack([steps, 10 + steps])}}}}
    recorder = Recorder(2)
    recorder.chunk(outputs, 1.0, steps % 4 == 0)
    recorder.chunk({name: jax.tree.map(lambda a: a + 6, value)
                    for name, value in outputs.items()}, 1.0, (steps + 6) % 4 == 0)
    assert recorder.done() == 12
    run = recorder.run_outputs(1)
    np.testing.assert_array_equal(run["train_loss"], 10 + np.arange(12))
    np.testing.assert_array_equal(run["snapshot"]["activations"]["x"]["mean"], [10, 14, 18])
    assert recorder.record()["outputs"]["snapshot"]["activations"]["x"]["mean"].shape == (2, 3)
