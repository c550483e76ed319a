"""The compiled trainer: compiles once, deterministic, measurements never change training."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import threading

import jax
import numpy as np
import pytest

from bnstudy.core import (
    PRESETS,
    TINY_MODEL_CONFIG,
    TINY_TRAIN_CONFIG,
    TRACE_COUNTS,
    PureModel,
    cross_entropy,
    get_trainer,
    train,
    training,
)

BOTH = [PRESETS["blog"], PRESETS["paper"]]


@pytest.fixture(scope="module")
def measured(tiny_arrays):
    return train(TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, BOTH, *tiny_arrays)


def test_result_shapes_and_steps(measured):
    layers, leaves = 6, 18
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
    before = dict(TRACE_COUNTS)
    again = train(TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, BOTH, *tiny_arrays)
    other_seed = train(TINY_MODEL_CONFIG, dataclasses.replace(TINY_TRAIN_CONFIG, seed=7,
                                                              max_steps=7), BOTH, *tiny_arrays)
    assert dict(TRACE_COUNTS) == before  # 3 chunks per run, new seed and length: no retrace
    assert before.get("step", 0) + before.get("chunk", 0) >= 1
    jax.tree.map(np.testing.assert_array_equal, again.measurements, measured.measurements)
    jax.tree.map(np.testing.assert_array_equal, again.final_params, measured.final_params)
    np.testing.assert_array_equal(again.test_accuracy, measured.test_accuracy)
    assert other_seed.steps.shape == (7,)
    assert not np.array_equal(other_seed.initial_params["out"]["kernel"],
                              measured.initial_params["out"]["kernel"])


@pytest.mark.parametrize("loop", ["scan", "host"])
def test_compiles_exactly_once_across_chunks(tiny_arrays, loop):
    config = dataclasses.replace(TINY_TRAIN_CONFIG, learning_rate=0.01, step_loop=loop)
    key = "chunk" if loop == "scan" else "step"
    before = dict(TRACE_COUNTS)
    result = train(TINY_MODEL_CONFIG, config, [], *tiny_arrays, snapshots=False)
    assert TRACE_COUNTS[key] == before.get(key, 0) + 1
    assert len(result.steps) == 10  # in 3 chunks of 4 (the last one half empty)


def test_host_loop_compiles_each_program_once(tiny_arrays):
    """The measured host loop: one program per distinct (layer, mode), none rebuilt later."""
    config = dataclasses.replace(TINY_TRAIN_CONFIG, learning_rate=0.02, step_loop="host")
    sparse = dataclasses.replace(PRESETS["paper"], measure_every=3)
    before = dict(TRACE_COUNTS)
    result = train(TINY_MODEL_CONFIG, config, [PRESETS["blog"], sparse], *tiny_arrays)
    paper = result.measurements["paper"]
    np.testing.assert_array_equal(paper["measured_steps"], [0, 3, 6, 9])
    assert np.all(np.isfinite(paper["ics_l2"])) and np.all(np.isfinite(paper["grad_diff"]))
    np.testing.assert_array_equal(result.activation_stats["steps"], [0, 3, 6, 9])
    first = {k: v - before.get(k, 0) for k, v in TRACE_COUNTS.items() if v != before.get(k, 0)}
    # 3 convs with BN (train and eval mode differ) and 3 dense layers (one program each).
    assert first == {"measured_step": 1, "snapshot": 1, "evaluate": 1,
                     "layer_forward": 3 * 2 + 3, "layer_input_cotangent": 2 * 2 + 3,
                     "layer_param_gradient": 3 * 2 + 3, "loss_cotangent": 1,
                     "ics_compare": 1, "probe_point": 2, "probe_summary": 2}
    after_first = dict(TRACE_COUNTS)
    train(TINY_MODEL_CONFIG, dataclasses.replace(config, seed=3, max_steps=9),
          [sparse, PRESETS["blog"]], *tiny_arrays)
    assert dict(TRACE_COUNTS) == after_first


def test_baseline_shares_the_ics_of_both_modes(tiny_arrays):
    """Without BN, train and eval mode coincide: one ICS computation for both presets."""
    baseline = dataclasses.replace(TINY_MODEL_CONFIG, normalization="none")
    config = dataclasses.replace(TINY_TRAIN_CONFIG, step_loop="host", max_steps=4)
    before = dict(TRACE_COUNTS)
    result = train(baseline, config, [PRESETS["blog"], PRESETS["paper"]], *tiny_arrays)
    assert TRACE_COUNTS["layer_forward"] - before.get("layer_forward", 0) == 6
    np.testing.assert_array_equal(result.measurements["blog"]["ics_l2"],
                                  result.measurements["paper"]["ics_l2"])
    assert get_trainer(baseline, config, [PRESETS["blog"], PRESETS["paper"]]).ics_modes == (
        "train",)


def test_probes_on_the_worker_thread_give_identical_results(tiny_arrays):
    """The host loop dispatches probe points from a second thread once their programs are
    compiled; the measurements are bit-for-bit those of dispatching everything from the
    main thread, and no program is traced twice. Under a thread-local JAX setting the
    worker cannot copy, the main thread dispatches everything. (enable_x64, which the
    worker does copy, is covered by the float64 runs of test_against_reference.py.)"""
    config = dataclasses.replace(TINY_TRAIN_CONFIG, step_loop="host", max_steps=6)
    trainer = get_trainer(TINY_MODEL_CONFIG, config, BOTH)
    results, traces, threads = {}, {}, {run: set() for run in ("main", "worker", "context")}
    probe_point = trainer.probe_point
    try:
        for run in ("main", "worker", "context"):
            trainer.concurrent_probes = run != "main"

            def recording(*args, run=run, **kwargs):
                threads[run].add(threading.current_thread().name)
                return probe_point(*args, **kwargs)

            trainer.probe_point = recording
            before = dict(TRACE_COUNTS)
            # "context": a thread-local JAX setting the worker cannot copy (here a matmul
            # precision context around the call; the programs carry their own precision)
            with (jax.default_matmul_precision("float32") if run == "context"
                  else contextlib.nullcontext()):
                results[run] = train(TINY_MODEL_CONFIG, config, BOTH, *tiny_arrays)
            traces[run] = {k: v - before.get(k, 0) for k, v in TRACE_COUNTS.items()
                           if v != before.get(k, 0)}
    finally:
        trainer.concurrent_probes, trainer.probe_point = True, probe_point
    assert traces["worker"] == {}  # everything compiled by the first run, none traced again
    main = threading.current_thread().name
    assert threads["main"] == {main}
    assert main in threads["worker"]
    assert any(t.startswith("bnstudy-probes") for t in threads["worker"])
    assert threads["context"] == {main}  # the worker declined: the main thread dispatched
    # Once compiled, the worker takes half of the step's work in probe points (an ICS mode
    # counts as 3 points): the 13 paper points first, then 1 of the 10 blog points.
    context = training._trace_context()
    assert trainer._split_probes(list(trainer.probe_keys), 2, context=("another",))[0] == []
    paper_key = next(k for k in trainer.probe_keys if len(k[2]) == 13)
    blog_key = next(k for k in trainer.probe_keys if len(k[2]) == 10)
    on_worker, on_main = trainer._split_probes(list(trainer.probe_keys), ics_due=2, context=context)
    assert on_worker == [(paper_key, i) for i in range(13)] + [(blog_key, 0)]
    assert on_main == [(blog_key, i) for i in range(1, 10)]
    on_worker, on_main = trainer._split_probes([blog_key], ics_due=1, context=context)  # blog alone
    assert on_worker == [(blog_key, i) for i in range(6)] and len(on_main) == 4
    trainer.concurrent_probes = False
    try:
        assert trainer._split_probes(list(trainer.probe_keys), ics_due=2, context=context)[0] == []
    finally:
        trainer.concurrent_probes = True
    for run in ("worker", "context"):
        jax.tree.map(np.testing.assert_array_equal, results[run].measurements,
                     results["main"].measurements)
        np.testing.assert_array_equal(results[run].train_loss, results["main"].train_loss)
    assert set(results["main"].measurements) == {"blog", "paper"}


def test_scan_and_host_loops_agree(tiny_arrays):
    results = [train(TINY_MODEL_CONFIG, dataclasses.replace(
        TINY_TRAIN_CONFIG, learning_rate=0.01, step_loop=loop), [], *tiny_arrays,
        snapshots=False) for loop in ("scan", "host")]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 results[0].final_params, results[1].final_params)
    np.testing.assert_allclose(results[0].train_loss, results[1].train_loss, rtol=1e-5)


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


def test_plain_train_step_matches_the_chunk(measured, tiny_arrays):
    trainer = get_trainer(TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG)
    state = trainer.init_state(jax.random.fold_in(jax.random.key(TINY_TRAIN_CONFIG.seed), 0))
    x, y = tiny_arrays[0][:8], tiny_arrays[1][:8]
    state, loss = trainer.train_step(state, x, y)
    assert np.isfinite(loss) and state["params"]["out"]["kernel"].shape == (8, 10)


def test_bad_inputs_raise_helpful_errors(tiny_arrays):
    x, y, xt, yt = tiny_arrays
    with pytest.raises(ValueError, match=r"x_train must have shape \[N, 8, 8, 3\]"):
        train(TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, [], x[:, :4], y, xt, yt)
    with pytest.raises(ValueError, match="names must be unique"):
        train(TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, [PRESETS["blog"]] * 2, x, y, xt, yt)


@pytest.mark.parametrize(("precision", "marker"), [("highest", "HIGHEST"), ("bfloat16", "DEFAULT")])
def test_programs_carry_their_matmul_precision_whoever_calls_them(precision, marker):
    """A Trainer's programs lower with TrainConfig.matmul_precision even when called outside
    any ``jax.default_matmul_precision`` context (as the benchmark and the host loop do):
    otherwise a GPU would silently run float32 matmuls in TF32."""
    config = dataclasses.replace(TINY_TRAIN_CONFIG, matmul_precision=precision, step_loop="host")
    trainer = get_trainer(TINY_MODEL_CONFIG, config, BOTH, snapshots=False)
    state = trainer.init_state(jax.random.key(0))
    x = jax.ShapeDtypeStruct((config.batch_size, 8, 8, 3), np.float32)
    y = jax.ShapeDtypeStruct((config.batch_size,), np.int32)
    text = trainer.train_step.lower(state, x, y).as_text()
    # every conv and dense dot, forward and backward, asks for the configured precision
    assert set(re.findall(r"precision ([A-Z]+)", text)) == {marker}
    assert text.count(f"precision {marker}") >= 2 * 6
