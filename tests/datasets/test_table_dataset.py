"""The tables' kedro viz preview (issue 24, kedro viz): the columns that matter first and rows
from every model, not five rows of the first model's first seed."""

from __future__ import annotations

import pandas as pd

from bnstudy.datasets import TableDataset


def _tidy() -> pd.DataFrame:
    rows = [{"preset": "paper", "layer": f"conv_{layer}", "step": step, "seed": seed, "model": model,
             "extra": "x", "value": float(step + layer)}
            for model in ("baseline", "candidate", "candidate_l1") for seed in (0, 1)
            for step in range(0, 100, 10) for layer in range(3)]
    return pd.DataFrame(rows)


def test_the_preview_leads_with_the_columns_that_matter_and_spans_every_model(tmp_path):
    dataset = TableDataset(filepath=str(tmp_path / "t.parquet"))
    dataset.save(_tidy())
    preview = dataset.preview(nrows=12)
    assert preview["columns"] == ["model", "seed", "step", "layer", "preset", "value", "extra"]
    frame = pd.DataFrame(preview["data"], columns=preview["columns"])
    assert len(frame) == 12
    assert frame["model"].value_counts().to_dict() == {"baseline": 4, "candidate": 4, "candidate_l1": 4}
    assert set(frame["seed"]) == {0, 1}  # each model's rows spread through it, both seeds
    # loading is ParquetDataset's: the whole table, its own column order
    assert list(dataset.load().columns) == list(_tidy().columns) and len(dataset.load()) == 180


def test_a_per_model_trace_spreads_its_preview_over_its_seeds(tmp_path):
    dataset = TableDataset(filepath=str(tmp_path / "t.parquet"))
    dataset.save(_tidy().drop(columns="model"))
    frame = pd.DataFrame(**{k: v for k, v in dataset.preview(nrows=6).items() if k != "index"})
    assert frame.columns[0] == "seed" and frame["seed"].value_counts().to_dict() == {0: 3, 1: 3}


def test_a_dataset_never_saved_previews_nothing_instead_of_raising(tmp_path):
    """kedro viz previews every dataset of every pipeline; one a study never wrote (a
    versioned file without versions) must answer None, not raise VersionNotFoundError (which
    kedro viz logs as a warning per dataset: 461 in a `kedro viz build` before)."""
    import inspect

    from kedro.io.core import Version

    from bnstudy.datasets import (
        HtmlDataset,
        ImageDataset,
        NpzDataset,
        PreviewedJSONDataset,
        ReportDataset,
    )

    made = [TableDataset(filepath=str(tmp_path / "t.parquet"), version=None),
            PreviewedJSONDataset(filepath=str(tmp_path / "s.json")),
            ImageDataset(filepath=str(tmp_path / "f.png")),
            HtmlDataset(filepath=str(tmp_path / "r.html")),
            NpzDataset(filepath=str(tmp_path / "a.npz")),
            ReportDataset(filepath=str(tmp_path / "report.md"))]
    made += [TableDataset(filepath=str(tmp_path / "v.parquet"), version=Version(None, None)),
             PreviewedJSONDataset(filepath=str(tmp_path / "v.json"), version=Version(None, None))]
    for dataset in made:
        assert dataset.preview() is None, type(dataset).__name__
        # the return annotation kedro viz reads to pick its renderer is kept
        assert "Preview" in str(inspect.signature(dataset.preview).return_annotation)
    saved = PreviewedJSONDataset(filepath=str(tmp_path / "saved.json"))
    saved.save({"a": 1})
    assert saved.preview() == '{"a": 1}'  # JSONDataset's own preview, once saved
