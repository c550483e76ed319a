"""The paper's Fig 11 (gradient difference against the distance moved along the gradient),
from probe traces whose distances are known in closed form."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnstudy.analysis.tables import gradient_difference_curves
from bnstudy.reporting import figures
from bnstudy.reporting.plotting import to_png

S = np.array([0.5, 1.0, 2.0, 4.0])
STEPS = (0, 5, 10)
LR = 0.1


def _probe_trace(grad_norm: dict[int, float], slope: float) -> pd.DataFrame:
    """Seeds k with ||g|| = grad_norm[k] at every step: step_norm = s * lr * ||g|| and a
    gradient difference ``slope * step_norm * (1 + step / 10)`` (smoother early)."""
    rows = []
    for seed, norm in grad_norm.items():
        for step in STEPS:
            distance = S * LR * norm
            rows.append(pd.DataFrame({
                "seed": seed, "learning_rate": LR, "preset": "paper", "step": step, "s": S,
                "probe_loss": 1.0, "grad_diff": slope * distance * (1 + step / 10),
                "step_norm": distance}))
    return pd.concat(rows, ignore_index=True)


def test_curves_are_one_per_model_and_measured_step_at_the_distance_s_lr_g():
    traces = {"baseline": _probe_trace({1: 2.0, 2: 4.0}, slope=3.0),
              "candidate": _probe_trace({1: 1.0, 2: 1.0}, slope=0.5)}
    table = gradient_difference_curves(traces)
    assert set(table.groupby(["model", "step"]).groups) == {
        (model, step) for model in traces for step in STEPS}
    base = table[(table.model == "baseline") & (table.step == 5)]
    # x = s * lr * (the seeds' mean ||g|| = 3), y = the seeds' mean gradient difference
    np.testing.assert_allclose(base["distance"], S * LR * 3.0, rtol=1e-12)
    np.testing.assert_allclose(base["grad_diff"], 3.0 * S * LR * 3.0 * 1.5, rtol=1e-12)
    assert (base["seeds"] == 2).all()
    figure = figures.gradient_difference_figure(table)
    lines = [ax.get_lines() for ax in figure.axes if ax.get_lines()]
    assert [len(on_axes) for on_axes in lines] == [len(STEPS), len(STEPS)]
    for on_axes, model in zip(lines, ("baseline", "candidate"), strict=True):
        for line, step in zip(on_axes, STEPS, strict=True):
            rows = table[(table.model == model) & (table.step == step)]
            np.testing.assert_allclose(line.get_xdata(), rows["distance"], rtol=1e-12)
    # colour by step: the first and the last step's lines differ in colour
    assert lines[0][0].get_color() != lines[0][-1].get_color()
    assert to_png(figure)[:4] == b"\x89PNG"


def test_nothing_probed_is_said_not_drawn():
    empty = _probe_trace({1: 1.0}, 1.0).iloc[:0]
    table = gradient_difference_curves({"baseline": empty, "candidate": empty})
    assert table.empty and "distance" in table.columns
    figure = figures.gradient_difference_figure(table)
    assert isinstance(figure, Figure) and not any(ax.get_lines() for ax in figure.axes)


def test_a_row_is_read_on_one_scale_and_on_a_log_axis_when_it_spans_decades():
    # values from 2 * 0.5 * 0.1 * 2 = 0.2 to 3 * 4 * 0.1 * 2 * 2 = 4.8: within a factor 100
    narrow = gradient_difference_curves({"baseline": _probe_trace({1: 2.0}, slope=3.0),
                                         "candidate": _probe_trace({1: 2.0}, slope=2.0)})
    wide = narrow.copy()
    wide.loc[wide.model == "candidate", "grad_diff"] *= 1e-3  # 3 decades below the baseline
    wide["preset"] = "blog"
    table = pd.concat([narrow, wide], ignore_index=True)
    figure = figures.gradient_difference_figure(table)
    panels = [ax for ax in figure.axes if ax.get_lines()]
    by_row = {}
    for ax in panels:
        by_row.setdefault(ax.get_title().split(": ")[1], []).append(ax)
    blog, paper = by_row["blog protocol, lr 0.1"], by_row["paper protocol, lr 0.1"]
    assert [ax.get_yscale() for ax in blog] == ["log", "log"]
    assert [ax.get_yscale() for ax in paper] == ["linear", "linear"]
    for row in (blog, paper):
        assert row[0].get_ylim() == row[1].get_ylim()  # both models on one scale
    high = narrow["grad_diff"].max()
    assert paper[0].get_ylim() == (0.0, high * 1.05)
    low = wide[wide.model == "candidate"]["grad_diff"].min()
    np.testing.assert_allclose(blog[0].get_ylim(), (low / 1.2, wide["grad_diff"].max() * 1.2))
