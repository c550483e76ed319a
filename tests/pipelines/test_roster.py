"""A roster entry in YAML alone (issue 20): a third model and a comparison that conf/base does not
have, written into the test environment's ``parameters_roster.yml`` of a project copy, get their
training namespace, traces, analysis rows, figure lines, report section and MLflow child run
from one `kedro run`, with no code changed; and a study of its own (``lr_study``) gets its
pipeline, analysis and report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bnstudy.roster import roster_from_parameters

# The roster (tests/conftest.py's ROSTER): a third model, candidate_fast (BatchNorm at another
# learning rate, an override of one shared key), and lr_study with candidate_slow; the
# session's roster_study fixture runs both studies once.


def _latest(project: Path, relative: str) -> Path:
    folder = project / relative
    return sorted(p for p in folder.iterdir() if p.is_dir())[-1] / folder.name


@pytest.mark.slow
def test_a_third_model_in_yaml_gets_every_output_of_the_study(roster_study):
    project = roster_study
    record = json.loads(_latest(project, "data/07_model_output/candidate_fast/run_record.json").read_text())
    assert record["train_config"]["learning_rate"] == 0.07  # its override
    assert record["train_config"]["seeds"] == [1337, 1, 2]  # the rest shared, as conf/test sets it
    assert record["model_config"]["normalization"] == "batch"
    trace = pd.read_parquet(_latest(project, "data/07_model_output/candidate_fast/training_trace.parquet"))
    assert len(trace) == 60  # 3 seeds x 20 steps

    # analysis rows of every model, under its roster name, and both comparisons
    for name in ("training_curves", "loss_landscape", "gradient_ics", "init_distance"):
        table = pd.read_parquet(_latest(project, f"data/08_reporting/tables/{name}.parquet"))
        assert set(table["model"]) == {"baseline", "candidate", "candidate_fast"}, name
    study = json.loads(_latest(project, "data/08_reporting/summaries/model_comparisons.json").read_text())
    assert list(study["comparisons"]) == ["candidate_vs_baseline", "candidate_fast_vs_candidate"]
    fast = study["comparisons"]["candidate_fast_vs_candidate"]
    assert fast["seeds"] == [1, 2, 1337] and "test_accuracy" in fast["measures"]

    # its lines in the figures: the figure functions draw every model of the table
    from bnstudy.reporting import figures

    table = pd.read_parquet(_latest(project, "data/08_reporting/tables/training_curves.parquet"))
    drawn = figures.training_curves_figure(table)
    labels = {line.get_label() for ax in drawn.axes for line in ax.get_lines()}
    assert {"Without BatchNorm", "With BatchNorm", "candidate_fast"} <= labels

    # its report section
    markdown = _latest(project, "data/08_reporting/report.md").read_text()
    assert "## Further comparisons" in markdown
    assert "### candidate_fast against BN (candidate_fast vs candidate)" in markdown

    # its MLflow child run, with its own parameters
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("bnstudy").experiment_id])
    children = {r.info.run_name: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert set(children) == {"baseline", "candidate", "candidate_fast", "candidate_slow"}
    assert children["candidate_fast"].data.params["training.learning_rate"] == "0.07"
    assert children["candidate"].data.params["training.learning_rate"] == "0.035"


@pytest.mark.slow
def test_a_study_in_yaml_gets_its_own_analysis_and_report(roster_study):
    project = roster_study
    study = json.loads(_latest(project, "data/08_reporting/summaries/lr_study.model_comparisons.json").read_text())
    assert study["headline"] == "candidate_slow_vs_candidate"
    headline = study["comparisons"]["candidate_slow_vs_candidate"]
    assert headline["seeds"] == [1, 2, 1337]
    table = pd.read_parquet(_latest(project, "data/08_reporting/tables/lr_study.loss_landscape.parquet"))
    assert set(table["model"]) == {"candidate", "candidate_slow"}
    markdown = _latest(project, "data/08_reporting/lr_study/report.md").read_text()
    assert "Each line: candidate_slow (candidate_slow) against BN (candidate)" in markdown
    assert "no claim is read from it here" in markdown  # not BN against no BN: no Fidelity table
    assert (_latest(project, "data/08_reporting/lr_study/report.md").parent / "figures" / "loss_landscape.png").is_file()
    # the full study's report is its own, with its Fidelity table
    full = _latest(project, "data/08_reporting/report.md").read_text()
    assert "**Fidelity**" in full and "candidate_slow" not in full


def test_a_roster_refuses_what_it_cannot_build():
    base = {"models": {"a": {"normalization": "none"}, "b": {"normalization": "batch"}},
            "studies": {"s": {"models": ["a", "b"], "comparisons": [{"reference": "a", "treatment": "b"}]}}}
    roster = roster_from_parameters(base)
    assert roster.trained_by("s") == ("a", "b") and roster.compared_in("s") == ("a", "b")
    extended = {**base, "studies": {**base["studies"], "t": {"extends": "s", "models": ["c"]}},
                "models": {**base["models"], "c": {"normalization": "l1"}}}
    assert roster_from_parameters(extended).compared_in("t") == ("a", "b", "c")
    # several studies extended at once, training none of its own: their models in that order
    several = {**extended, "studies": {**extended["studies"], "u": {"extends": ["t", "s"], "models": []}}}
    assert roster_from_parameters(several).compared_in("u") == ("a", "b", "c")
    assert roster_from_parameters(several).trained_by("u") == ()
    from bnstudy.errors import ParameterError

    bad = [
        ({"studies": {"s": {"models": ["a"]}, "t": {"models": ["a"]}}}, "trained by study 's' already"),
        ({"studies": {"s": {"models": ["a"], "extends": "t"}, "t": {"models": ["b"], "extends": "s"}}},
         "extend each other in a circle"),
        ({"studies": {"s": {"models": ["a"], "extends": ["u", "t"]}, "t": {"models": ["b"], "extends": "s"},
                      "u": {"models": []}}}, r"circle \(s -> t -> s\)"),
        ({"studies": {"s": {"models": ["a"], "extends": ["nope"]}}}, "extends = 'nope': no such study"),
        ({"studies": {"s": {"models": ["a", "b"], "comparisons": [{"reference": "a", "treatment": "a"}]}}},
         "compares 'a' with itself"),
        ({"studies": {"s": {"models": ["a"], "comparisons": [{"reference": "a", "treatment": "b"}]}}},
         r"comparisons\[0\]\.treatment = 'b': the study has the models \['a'\]"),
        ({"models": {}}, "expects a mapping of names"),
    ]
    for override, message in bad:
        with pytest.raises(ParameterError, match=message):
            roster_from_parameters({**base, **override})


def test_kedro_describes_a_study_that_the_roster_declares_without_a_folder():
    """`kedro registry describe <study>` names the pipeline it asks for: a study of the roster
    alone (no pipelines/<study> folder) is still registered (Kedro's find_pipelines would
    look for the folder and raise)."""
    import os
    import subprocess

    from tests.conftest import PROJECT_ROOT
    from tests.reliability.cli_helpers import KEDRO

    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
    result = subprocess.run([str(KEDRO), "registry", "describe", "optimizer_fidelity_study"], check=False, cwd=PROJECT_ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "optimizer_fidelity_study.compare_models_node" in result.stdout
    assert "optimizer_fidelity_study.baseline" not in result.stdout  # it trains no model of its own
