"""Both UIs as a user opens them, in headless Chromium, on a finished test-environment study:
`kedro viz run`, the static `kedro viz build` served over HTTP, and `mlflow ui`'s compare view
of the two model runs. Each test saves one screenshot (1600x1000) under screenshots/."""

from __future__ import annotations

import json
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from bnstudy.palette import STUDY_RUN_COLOR, model_color
from tests.browser.conftest import free_port, screenshot, serving

pytestmark = pytest.mark.slow

KEDRO = Path(sys.executable).parent / "kedro"
MLFLOW = Path(sys.executable).parent / "mlflow"
# Node labels both namespaces must show (kedro viz names a namespaced dataset <model>.<name>).
PER_MODEL = ("training_trace", "ics_trace", "smoothness_trace", "run_record", "mlflow_live")
SHARED = ("model_input_train", "loss_landscape_figure", "model_comparisons_summary", "study_report_md")
HEADLINE = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "final_test_accuracy")


def _viz_page(page, url: str, expanded: bool = True) -> list[str]:
    """Open kedro viz at ``url`` with every namespace expanded (or collapsed) and no
    onboarding tour over the graph; the node labels it draws."""
    state = json.dumps({"showFeatureHints": False, "expandAllPipelines": expanded})
    page.add_init_script(f"window.localStorage.setItem('KedroViz', {json.dumps(state)})")
    page.goto(f"{url}?expandAllPipelines={str(expanded).lower()}")
    page.wait_for_selector(".pipeline-node", timeout=60_000)
    page.wait_for_timeout(1500)  # the layout settles
    dismiss = page.get_by_text("Dismiss", exact=True)  # the update banner (it checks PyPI)
    if dismiss.count():
        dismiss.first.click()
    labels = page.eval_on_selector_all(".pipeline-node", "nodes => nodes.map(n => n.textContent)")
    assert labels, "kedro viz drew no node"
    return labels


def _assert_both_namespaces(labels: list[str]) -> None:
    expected = {f"{model}.{name}" for model in ("baseline", "candidate") for name in PER_MODEL}
    expected |= set(SHARED)
    missing = expected - set(labels)
    assert not missing, f"kedro viz does not draw {sorted(missing)}"
    assert labels.count("train_model_node") == 2  # one per namespace


def _assert_one_output_per_model(graph: dict) -> None:
    """kedro viz's own tree (``/api/main``): each model's namespace has one output, its
    results, and holds its traces and both of its nodes."""
    names = {node["id"]: node["name"] for node in graph["nodes"]}
    for model in ("baseline", "candidate"):
        tree = graph["modular_pipelines"][model]
        assert [names[i] for i in tree["outputs"]] == [f"{model}.results"], model
        children = {names[child["id"]] for child in tree["children"]}
        assert {f"{model}.{name}" for name in PER_MODEL if name != "mlflow_live"} <= children
        assert {"train_model_node", "collect_results_node"} <= children


def _assert_each_model_is_one_box(labels: list[str]) -> None:
    """Collapsed, a model is one box (labelled with its name) and its one output; none of
    its traces is drawn."""
    for model in ("baseline", "candidate"):
        assert labels.count(model) == 1 and f"{model}.results" in labels, model
        drawn = [label for label in labels if label.startswith(f"{model}.")]
        assert sorted(drawn) == [f"{model}.mlflow_live", f"{model}.results"], drawn
    assert "train_model_node" not in labels and set(SHARED) <= set(labels)


def test_kedro_viz_draws_both_namespaces_and_previews_a_figure(finished_study, page):
    port = free_port()
    command = [str(KEDRO), "viz", "run", "--host", "127.0.0.1", "--port", str(port), "--no-browser",
               "--env", "test"]
    with serving(command, f"http://127.0.0.1:{port}/api/main", finished_study) as api:
        graph = json.loads(urllib.request.urlopen(api, timeout=60).read())
        assert {"baseline", "candidate"} <= set(graph["modular_pipelines"])
        # a tidy table's preview leads with model ... value and shows every model's rows
        (table,) = [n["id"] for n in graph["nodes"] if n["name"] == "loss_landscape_table"]
        node = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/nodes/{table}", timeout=60).read())
        preview = node["preview"]
        assert preview["columns"][0] == "model" and "value" in preview["columns"][:8], preview["columns"]
        models = {row[0] for row in preview["data"]}
        assert models == {"baseline", "candidate"}, models
        _assert_one_output_per_model(graph)
        labels = _viz_page(page, f"http://127.0.0.1:{port}/")
        _assert_both_namespaces(labels)
        screenshot(page, "kedro_viz_graph")
        collapsed = page.context.new_page()
        _assert_each_model_is_one_box(_viz_page(collapsed, f"http://127.0.0.1:{port}/", expanded=False))
        screenshot(collapsed, "kedro_viz_collapsed")
        collapsed.close()
        # a figure's side panel shows the figure itself (ImageDataset.preview)
        page.locator(".pipeline-node", has_text="loss_landscape_figure").first.click()
        preview = page.locator(".pipeline-metadata img")
        preview.first.wait_for(timeout=30_000)
        assert preview.first.evaluate("img => img.naturalWidth") > 100
        screenshot(page, "kedro_viz_figure_preview")


def test_kedro_viz_build_is_served_over_http(viz_build, page):
    port = free_port()
    command = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port), "--directory",
               str(viz_build)]
    failed, errors = [], []
    page.on("response", lambda response: failed.append(f"{response.status} {response.url}")
            if response.status >= 400 else None)
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    with serving(command, f"http://127.0.0.1:{port}/", viz_build.parent):
        labels = _viz_page(page, f"http://127.0.0.1:{port}/")
        _assert_both_namespaces(labels)
        # every API request of the front end is answered: /api/metadata too (bnstudy.viz_site)
        assert not failed, failed
        assert not [e for e in errors if "metadata" in e], errors
        screenshot(page, "kedro_viz_build")


def _rest_checks(client, experiment_id: str) -> tuple[str, str]:
    """Through the REST API: the newest study run with model runs (a later `reporting` run has
    none) and its two model runs exist, with the same metric keys and increasing metric
    timestamps. Returns the two model runs' ids."""
    runs = client.search_runs([experiment_id], order_by=["attributes.start_time DESC"])
    parent_id = next(r.data.tags["mlflow.parentRunId"] for r in runs if "mlflow.parentRunId" in r.data.tags)
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and "mlflow.parentRunId" not in parent.data.tags
    children = sorted((r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id),
                      key=lambda r: r.info.run_name)
    assert [c.info.run_name for c in children] == ["baseline", "candidate"]
    assert set(children[0].data.metrics) == set(children[1].data.metrics)
    assert set(HEADLINE) <= set(children[0].data.metrics)
    for child in children:
        stamps = [m.timestamp for m in client.get_metric_history(child.info.run_id, "train_loss")]
        assert stamps == sorted(stamps) and stamps[0] < stamps[-1], child.info.run_name
        # its duration covers its training (the engine's wall time) and it ends after it
        duration_s = (child.info.end_time - child.info.start_time) / 1000
        assert child.data.metrics["run/wall_time_s"] <= duration_s, child.info.run_name
        assert child.data.tags["mlflow.runColor"] == model_color(child.info.run_name)
    # the runs do not overlap: the baseline ends before the candidate starts training
    first, second = sorted(children, key=lambda r: r.info.start_time)
    assert first.info.end_time <= second.info.start_time, (first.info.run_name, second.info.run_name)
    assert parent.data.tags["mlflow.runColor"] == STUDY_RUN_COLOR
    assert "run_id" not in parent.data.tags and "kedro.session_id" in parent.data.tags
    return children[0].info.run_id, children[1].info.run_id


def test_mlflow_compare_view_shows_the_headline_metrics_of_both_models(finished_study, page):
    import mlflow

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [str(MLFLOW), "ui", "--backend-store-uri", f"sqlite:///{finished_study / 'mlflow.db'}",
               "--host", "127.0.0.1", "--port", str(port)]
    with serving(command, f"{base}/health", finished_study):
        client = mlflow.MlflowClient(tracking_uri=base)
        experiment = client.get_experiment_by_name("bnstudy")
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
        baseline, candidate = _rest_checks(client, experiment.experiment_id)

        # the assistant panel closed, so the comparison has the page's width
        page.add_init_script("window.localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
                             "window.localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true')")
        runs = urllib.parse.quote(json.dumps([baseline, candidate]))
        experiments = urllib.parse.quote(json.dumps([experiment.experiment_id]))
        page.goto(f"{base}/#/compare-runs?runs={runs}&experiments={experiments}&workflowType=machine_learning")
        page.wait_for_selector("text=Run details", timeout=60_000)
        assert page.get_by_text("baseline", exact=True).count() and page.get_by_text("candidate", exact=True).count()
        shown = _metric_rows(page)
        missing = set(HEADLINE) - shown
        assert not missing, f"the compare view does not list {sorted(missing)}"
        assert {"paper/loss_range", "blog/loss_range"} <= shown
        screenshot(page, "mlflow_compare")

        # the experiment page from the link this project prints lands in the model-training
        # view: its runs table lists the study run, not the GenAI overview
        page.goto(f"{base}/#/experiments/{experiment.experiment_id}?workflowType=machine_learning")
        page.get_by_text("baseline", exact=True).or_(page.get_by_text(_study_run_name(client, experiment),
                                                                        exact=True)).first.wait_for(timeout=60_000)
        assert "/overview" not in page.url
        # the model-training side bar (Runs, Models, Traces), not the GenAI one (Overview, ...)
        assert page.get_by_text("Runs", exact=True).count() and page.get_by_text("Model registry").count()
        assert not page.get_by_text("Overview", exact=True).count()
        screenshot(page, "mlflow_experiment")


def _study_run_name(client, experiment) -> str:
    """The newest study run's name (the parent of the newest model runs)."""
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    parent_id = next(r.data.tags["mlflow.parentRunId"] for r in runs if "mlflow.parentRunId" in r.data.tags)
    return client.get_run(parent_id).info.run_name


def _metric_rows(page) -> set[str]:
    """Every row label of the compare view's metric table. It is two virtualized grids side by
    side (labels, values) that render the rows in view: both are scrolled through together."""
    cell = page.get_by_text("blog/loss_range", exact=True).first
    cell.wait_for(timeout=30_000)
    cell.scroll_into_view_if_needed()
    seen: set[str] = set()
    # the last offset scrolls both grids to their ends, where they line up (the value grid has
    # a row more) and where the headline rows are (test_*, train_*, sorted last)
    for offset in [*range(0, 4000, 200), 10**6]:
        seen |= {line.strip() for line in page.inner_text("body").split("\n")}
        page.evaluate(_SCROLL_METRIC_GRIDS, offset)
        page.wait_for_timeout(150)
    return seen


# The metric table's label grid holds the metric names; its value grid has the same height.
_SCROLL_METRIC_GRIDS = """(offset) => {
    const grids = [...document.querySelectorAll('.ReactVirtualized__Grid')];
    const labels = grids.find(grid => /blog\\/|paper\\/|final_/.test(grid.textContent));
    for (const grid of grids) {
        if (grid.scrollHeight === labels.scrollHeight) grid.scrollTop = offset;
    }}"""
