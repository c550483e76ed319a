from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bnstudy.core import PRESETS, MeasurementConfig, ModelConfig, TrainConfig


def test_defaults_are_the_paper_network_with_the_blog_optimizer():
    """The paper's VGG at paper scale, trained with the blog's optimizer (SGD, momentum 0.9,
    lr 0.035), not the paper's (plain SGD, lr 0.1)."""
    model, run = ModelConfig(), TrainConfig()
    assert model.conv_features == (64, 64, 128, 128, 256, 256, 512, 512, 512, 512)
    assert model.pool_after == (1, 3, 5, 7, 9)
    assert (model.dense_features, model.num_classes) == ((96, 96), 10)
    assert (model.bn_momentum, model.bn_epsilon, model.flat_features) == (0.9, 1e-5, 512)
    assert (run.learning_rate, run.momentum, run.nesterov) == (0.035, 0.9, False)
    assert (run.batch_size, run.epochs, run.eval_every) == (128, 39, 200)
    assert run.total_steps(50_000) == 39 * 390
    assert run.matmul_precision == "highest"


def test_from_dict_builds_hashable_configs_from_yaml_lists():
    config = ModelConfig.from_dict({"normalization": "none", "conv_features": [8, 16],
                                    "pool_after": [0, 1], "width_multiplier": 0.5})
    assert config.conv_features == (8, 16) and config.conv_widths == (4, 8)
    assert hash(config) == hash(ModelConfig.from_dict(config.to_dict()))
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()


@pytest.mark.parametrize("cls", [ModelConfig, TrainConfig, MeasurementConfig])
def test_from_dict_rejects_unknown_keys_naming_them_and_the_valid_ones(cls):
    with pytest.raises(ValueError, match=r"unknown .*'lerning_rate'.*valid keys"):
        cls.from_dict({"lerning_rate": 0.1})


@pytest.mark.parametrize(("cls", "values", "message"), [
    (ModelConfig, {"normalization": "layer"}, r"normalization must be one of \['none', 'batch', 'batch_noisy', 'noisy', 'l1', 'l2', 'linf'\]"),
    (ModelConfig, {"pool_after": (0, 11)}, r"pool_after must hold distinct conv indices"),
    (ModelConfig, {"image_size": 24}, r"not divisible by 2\*\*5"),
    (ModelConfig, {"width_multiplier": 0}, r"width_multiplier must be > 0"),
    (TrainConfig, {"steps_per_chunk": 300}, r"must divide eval_every .* set steps_per_chunk"),
    (TrainConfig, {"batch_size": 0}, r"batch_size must be a positive integer"),
    (TrainConfig, {"matmul_precision": "fast"}, r"matmul_precision must be one of"),
    (TrainConfig, {"learning_rates": []}, r"learning_rates must list at least one .* use null"),
    (TrainConfig, {"learning_rates": [0.1, 0.2, 0.1]}, r"learning_rates must be distinct, got "
                                                       r"\[0.1, 0.2, 0.1\]"),
    (TrainConfig, {"learning_rates": [0.1, 0]}, r"learning_rates must be positive finite .*"
                                               r"not allowed: \[0.0\]"),
    (TrainConfig, {"learning_rates": [0.1, float("inf")]}, r"must be positive finite"),
    (TrainConfig, {"learning_rates": ["0.1"]}, r"learning_rates\[0\] expects int or float"),
    (MeasurementConfig, {"ics_mode": "test"}, r"ics_mode must be one of \['train', 'eval'\]"),
    (MeasurementConfig, {"probe_min": 5.0, "probe_max": 1.0}, r"is empty; make probe_max larger"),
])
def test_validation_says_what_was_wrong(cls, values, message):
    with pytest.raises(ValueError, match=message):
        cls.from_dict(values)


def test_presets_probe_the_documented_step_sizes():
    blog, paper = PRESETS["blog"], PRESETS["paper"]
    assert (blog.ics_mode, blog.probe_start, blog.probe_mode) == ("eval", "post_step", "eval")
    assert (paper.ics_mode, paper.probe_start, paper.probe_mode) == ("train", "pre_step", "train")
    np.testing.assert_allclose(blog.probe_s, np.arange(10) * 2 + 0.5)
    np.testing.assert_allclose(np.array(blog.probe_s) * 0.035, np.linspace(0.0175, 0.6475, 10))
    np.testing.assert_allclose(paper.probe_s, np.linspace(0.5, 4.1, 13))
    assert blog.measure_every == paper.measure_every == 1


def test_measurement_from_dict_can_start_from_a_preset():
    config = MeasurementConfig.from_dict({"preset": "blog", "measure_every": 10})
    assert config == dataclasses.replace(PRESETS["blog"], measure_every=10)
    with pytest.raises(ValueError, match="unknown measurement preset 'blg'"):
        MeasurementConfig.from_dict({"preset": "blg"})


def test_learning_rates_replace_the_learning_rate_and_pairs_are_seed_major():
    single = TrainConfig(seeds=(1, 2))
    assert single.learning_rates is None and single.learning_rate_list == (0.035,)
    sweep = TrainConfig.from_dict({"seeds": [1, 2], "learning_rate": 0.5,
                                   "learning_rates": [0.01, 1]})
    assert sweep.learning_rate_list == (0.01, 1.0)  # learning_rate is not used
    assert sweep.runs == ((1, 0.01), (1, 1.0), (2, 0.01), (2, 1.0))
    assert TrainConfig.from_dict(sweep.to_dict()) == sweep
    assert TrainConfig(seed=5).runs == ((5, 0.035),)


def test_every_train_field_either_shapes_programs_or_only_the_run():
    """A new TrainConfig field must be put on one side: in ProgramConfig (the compile key) or
    in RUN_FIELDS (not part of any program)."""
    from bnstudy.core.config import PROGRAM_FIELDS, RUN_FIELDS

    fields = [field.name for field in dataclasses.fields(TrainConfig)]
    assert sorted(PROGRAM_FIELDS + RUN_FIELDS) == sorted(fields)
    assert not set(PROGRAM_FIELDS) & set(RUN_FIELDS)
    program = TrainConfig(batch_size=16, nesterov=True).program
    assert (program.batch_size, program.nesterov, program.matmul_precision) == (16, True, "highest")
