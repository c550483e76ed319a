"""A model's TrainingResults through files (bnstudy.run_files), as a GPU run hands them over."""

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

from bnstudy.analysis.traces import model_traces
from bnstudy.core import PRESETS, TINY_MODEL_CONFIG, TINY_TRAIN_CONFIG, train_seeds
from bnstudy.run_files import load_results, save_results
from tests.core.conftest import tiny_data


@pytest.fixture(scope="module")
def results():
    config = dataclasses.replace(TINY_TRAIN_CONFIG, seeds=(1, 2), curvature_every=4,
                                 curvature_probe_size=16, curvature_max_iters=3)
    return train_seeds(TINY_MODEL_CONFIG, config, [PRESETS["paper"], PRESETS["blog"]], *tiny_data())


def _same(a, b, where: str) -> None:
    """Equal values of equal types: arrays bit for bit with their dtypes, dicts key by key."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for key in a:
            _same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}/{i}")
    elif isinstance(a, (np.ndarray, np.generic)):
        assert type(a) is type(b) and a.dtype == b.dtype and np.shape(a) == np.shape(b), where
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert type(a) is type(b), where
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), where


def test_results_read_back_equal_to_what_was_saved(results, tmp_path):
    about = {"runtime": {"backend": "gpu", "device_kind": "NVIDIA H200"}, "num_train": 40}
    loaded, about_back = load_results(save_results(results, tmp_path / "candidate", about))
    assert about_back == about
    assert len(loaded) == len(results) == 2
    for mine, saved in zip(loaded, results, strict=True):
        for field in dataclasses.fields(saved):
            _same(getattr(saved, field.name), getattr(mine, field.name), field.name)
    assert results[0].curvature and results[0].activation_stats  # the nested fields were there
    # the tables a study makes of them are the same
    for name, table in model_traces(results).items():
        pd.testing.assert_frame_equal(model_traces(loaded)[name], table, check_exact=True, obj=name)


def test_a_folder_without_results_or_of_another_format_is_refused(results, tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved training results.*paper_run.py --out"):
        load_results(tmp_path)
    folder = save_results(results, tmp_path / "m", {})
    document = json.loads((folder / "results.json").read_text())
    (folder / "results.json").write_text(json.dumps({**document, "format": "other/9"}))
    with pytest.raises(ValueError, match="format 'other/9'.*paper_run.py"):
        load_results(folder)


def test_an_unsaveable_value_is_refused_naming_it(tmp_path):
    with pytest.raises(ValueError, match="about/bad: a set"):
        save_results([], tmp_path, {"bad": {1, 2}})
