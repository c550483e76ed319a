"""The report on small synthetic inputs: Setup, Fidelity, seed caveats, escaping, links."""

from __future__ import annotations

import re

import pytest

from bnstudy.pipelines.reporting import nodes
from bnstudy.reporting import conclusions as words
from bnstudy.reporting import document, report

FAKE_PNG = b"\x89PNG\r\n\x1a\nfake"
FAKE_GIF = b"GIF89afake"


def _figures() -> dict[str, bytes]:
    return {name: FAKE_GIF if name == "activation_animation" else FAKE_PNG for name in nodes.FIGURE_NAMES}


def _markdown(inputs) -> str:
    built = report.build_report(**inputs)
    return document.render_markdown(built, _figures())


def _table(markdown: str, caption: str) -> list[list[str]]:
    """Cells of the Markdown table under ``**caption**``, or folded under a ``<summary>`` of
    that caption (header first), split on unescaped |."""
    marker = f"**{caption}**\n\n" if f"**{caption}**\n\n" in markdown else f"<b>{caption}</b>"
    after = markdown.split(marker, 1)[1]
    if marker.startswith("<b>"):
        after = after.split("</summary>\n\n", 1)[1]
    block = after.split("\n\n", 1)[0].splitlines()
    rows = [re.split(r"(?<!\\)\|", line.strip())[1:-1] for line in block]
    return [[cell.strip() for cell in row] for row in rows if not set("".join(row)) <= set("-")]


def _section(markdown: str, title: str) -> str:
    return markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_setup_names_every_provenance_field(three_seeds):
    setup = _section(_markdown(three_seeds), "Setup (provenance)")

    expected = [
        "image_folder: /data/shared/cifar10-jpeg.tar.gz",  # data source
        "sha256:" + "f" * 64, "md5 0123456789abcdef0123456789abcdef",  # its checksum
        "JPEG copy",  # not the official archive
        "320 train images (class-stratified subset", "100 test images",  # subset sizes
        "test (conf/test)",  # environment
        "[8, 16]", "[12]",  # widths after the 0.125 width multiplier
        "20 of SGD",  # steps
        "1337, 1, 2",  # seeds
        "blog: every step", "paper: every 8 steps",  # stride per protocol
        "highest",  # matmul precision
        "jax 0.7.1", "flax 0.11.2", "kedro 1.0.0",  # versions
        "CPU: Example CPU Model 9000",  # device
        "baseline 12.3 s", "candidate 23.4 s",  # wall time
    ]
    missing = [value for value in expected if value not in setup]
    assert not missing, f"Setup lacks {missing}:\n{setup}"


def test_official_archive_is_named_as_such(three_seeds):
    three_seeds["provenance"] = {**three_seeds["provenance"], "source": "python_archive",
                                 "location": "/data/cifar-10-python.tar.gz"}
    setup = _section(_markdown(three_seeds), "Setup (provenance)")
    assert "official archive" in setup and "JPEG" not in setup


def test_fidelity_table_has_eight_columns_and_one_row_per_claim(three_seeds):
    """Issue 21: raw and Holm-adjusted p side by side, and the smallest effect the seeds detect."""
    rows = _table(_markdown(three_seeds), "Fidelity")

    assert rows[0] == ["claim", "paper", "blog", "protocol", "this run (value, CI, significant?)",
                       "p: raw / Holm (3 claims)", "smallest detectable", "agrees?"]  # the rows given
    body = rows[1:]
    assert len(body) == len(three_seeds["fidelity"]["rows"]) == 3
    assert all(len(row) == 8 for row in body)
    assert body[1][0] == "Smoother loss landscape with BN"
    assert re.search(r"ratio 0\.\d+ \[0\.\d+, 0\.\d+\], lower for BN, significant across 3 seeds", body[1][4])
    fidelity_rows = three_seeds["fidelity"]["rows"]
    assert fidelity_rows[1]["p_holm"] >= fidelity_rows[1]["p_value"]
    assert body[1][5] == words.p_values(fidelity_rows[1]) == "< 0.001 / < 0.001"
    assert body[0][5] == words.p_values(fidelity_rows[0])
    assert body[1][6].startswith("ratio ") and " or " in body[1][6]
    assert body[1][7] == "yes (significant, 3 seeds)"


def test_a_claim_significant_only_before_holm_is_called_so(three_seeds):
    rows = [dict(row) for row in three_seeds["fidelity"]["rows"]]
    rows[1].update(p_value=0.03, p_holm=0.09, significant=True, significant_holm=False)
    table = words.fidelity_table(rows, "blog optimizer (SGD m=0.9, lr 0.035)", 3)
    assert table.rows[1][5] == "0.0300 / 0.0900"
    assert table.rows[1][7] == "yes (significant only before Holm's adjustment, 3 seeds)"


def test_fidelity_protocol_names_the_measurement_protocol_and_the_blog_optimizer(three_seeds):
    """The conftest's records train with SGD, momentum 0.9, lr 0.035: the blog's optimizer,
    whatever the measurement protocol (the paper's protocol is not the paper's optimizer)."""
    body = _table(_markdown(three_seeds), "Fidelity")[1:]

    assert [row[3] for row in body] == ["paper protocol, blog optimizer (SGD m=0.9, lr 0.035)"] * 2 + [
        "activation snapshots (no protocol), blog optimizer (SGD m=0.9, lr 0.035)"]


def test_fidelity_protocol_names_the_paper_optimizer_when_the_run_used_it(paper_optimizer):
    body = _table(_markdown(paper_optimizer), "Fidelity")[1:]

    assert body[0][3] == "paper protocol, paper optimizer (plain SGD, lr 0.1)"
    assert all("paper optimizer (plain SGD, lr 0.1)" in row[3] and "blog optimizer" not in row[3] for row in body)


def test_fidelity_protocol_gives_other_settings_and_each_model_s_when_they_differ(three_seeds):
    three_seeds["records"]["candidate"]["train_config"].update(learning_rate=0.05, momentum=0.5)
    body = _table(_markdown(three_seeds), "Fidelity")[1:]

    assert body[0][3] == ("paper protocol, baseline: blog optimizer (SGD m=0.9, lr 0.035); "
                          "candidate: SGD, momentum 0.5, lr 0.05")


def test_a_pipe_inside_a_cell_is_escaped(three_seeds):
    markdown = _markdown(three_seeds)

    assert r"Activation shift \| similar or larger" in markdown  # a claim with a |
    assert r"gradient norm \|\|g_t\|\|" in markdown  # a view's name in the views table
    assert document.md_cell("a|b\nc") == r"a\|b c"
    for line in markdown.splitlines():  # every table row has as many cells as its header
        if line.startswith("| "):
            assert len(re.split(r"(?<!\\)\|", line)) - 2 in (2, 4, 6, 8), line


def test_one_seed_opens_with_the_caveat_and_nothing_says_yes_or_no(one_seed):
    markdown = _markdown(one_seed)

    head = markdown.split("## Setup", 1)[0]
    assert "one seed" in head.lower() and "no interval, not testable" in head
    for row in _table(markdown, "Fidelity")[1:]:
        assert not re.match(r"(yes|no)\b", row[5]), row
        assert "single seed: no interval, not testable" in row[4]
    conclusions = _section(markdown, "Conclusions")
    assert "single seed: no interval, not testable" in conclusions
    assert not re.search(r":\s*(yes|no)\.", markdown)  # no bare verdicts anywhere


def test_several_seeds_state_the_test_and_no_caveat(three_seeds):
    head = _markdown(three_seeds).split("## Setup", 1)[0]
    assert "3 seeds" in head and "Caveat" not in head


def test_conclusions_give_every_view_the_disagreement_and_the_stalled_phase(three_seeds):
    markdown = _markdown(three_seeds)
    conclusions = _section(markdown, "Conclusions")

    assert "seed 1337: 7 of 20" in conclusions
    assert "without BatchNorm: never (seed 1337)" in conclusions and "with BatchNorm: step 12 (seed 1337), step 12 (seed 1)" in conclusions
    assert "the views disagree" in conclusions
    views = _table(markdown.split("### Loss range along the gradient (paper protocol)", 1)[1], "Every view")
    assert [row[0] for row in views[1:]] == [
        "all compared steps (per seed: the median)",
        "at matched training loss (geometric mean over common loss levels)",
        r"divided by the step's gradient norm \|\|g_t\|\|",
        "early third of training", "middle third of training", "late third of training"]
    accuracy = _table(markdown, "Final test accuracy")
    assert accuracy[1] == ["1337", "40.0%", "60.0%", "+20.0 points"]
    assert "Paired difference BN - no BN" in markdown and "difference 0.185 [" in markdown


def test_markdown_links_its_figures_with_captions_and_embeds_none(three_seeds):
    markdown = _markdown(three_seeds)

    assert "data:image" not in markdown and "base64" not in markdown
    for name in nodes.FIGURE_NAMES:
        suffix = "gif" if name == "activation_animation" else "png"
        assert f"](figures/{name}.{suffix})" in markdown
    captions = re.findall(r"^\*Figure (\d+)\. (.+)\*", markdown, flags=re.MULTILINE)
    assert [int(n) for n, _ in captions] == list(range(1, len(nodes.FIGURE_NAMES) + 1))
    assert "One seed, the first (1337)" in markdown  # histograms: which seed
    assert "95% Student-t interval" in markdown  # bands: which interval


def test_write_report_node_returns_the_report_with_its_figures_and_an_html_page(three_seeds):
    i = three_seeds
    headline = {**i["comparisons"], "reference": "baseline", "treatment": "candidate"}
    further = {**i["comparisons"], "reference": "baseline", "treatment": "extra",
               "note": "Left out of every statistic and figure (diverged): seed 2: extra diverged at step 9."}
    study = {"headline": "candidate_vs_baseline",
             "comparisons": {"candidate_vs_baseline": headline, "extra_vs_baseline": further}}
    records = {"run_record:baseline": i["records"]["baseline"], "run_record:candidate": i["records"]["candidate"],
               "run_record:extra": i["records"]["candidate"]}
    markdown, page, metrics, note = nodes.write_report(
        i["params"], study, i["fidelity"], i["provenance"], i["preprocessing"], **records,
        **{f"figure:{name}": value for name, value in _figures().items()})

    # the MLflow run's description: the title, the summary box (each claim's verdict) and the caveats
    assert note.startswith("**A bnstudy report**")
    for row in i["fidelity"]["rows"]:
        assert document.md_cell(row["claim"]) in note and document.md_cell(words.agreement(row, 3)) in note

    assert set(markdown["files"]) == {f"figures/{n}.{'gif' if n == 'activation_animation' else 'png'}"
                                      for n in nodes.FIGURE_NAMES}
    assert markdown["text"].startswith("# A bnstudy report")
    assert page.count("data:image/png;base64,") == len(nodes.FIGURE_NAMES) - 1
    assert "data:image/gif;base64," in page and "<figcaption>Figure 1." in page
    assert metrics["candidate.final_test_accuracy"] == {"value": 0.5, "step": 0}
    # the further comparison: its own section, conclusions and table, after the headline's
    further_section = markdown["text"].split("### extra against no BN (extra vs baseline)\n", 1)[1]
    assert "seed 2: extra diverged at step 9" in further_section
    assert "<summary><b>Every measure, paired by seed</b>" in further_section  # folded
    assert markdown["text"].index("## Further comparisons") > markdown["text"].index("## Fidelity")
    assert metrics["paper/loss_range.ratio"]["value"] == pytest.approx(
        i["comparisons"]["measures"]["paper/loss_range"]["overall"]["estimate"], rel=1e-3)


def test_each_study_keeps_its_own_block_of_the_runs_description():
    from bnstudy.datasets.mlflow_note_dataset import with_block

    note = with_block("", "full_study", "first")
    assert note == "<!-- bnstudy:full_study -->\nfirst\n<!-- /bnstudy:full_study -->"
    both = with_block(note, "beyond_study", "second")
    assert both.index("first") < both.index("second")
    again = with_block(both, "full_study", "first, again")
    assert "first, again" in again and "second" in again and again.count("<!-- bnstudy:full_study -->") == 1
    assert again.index("first, again") < again.index("second")  # replaced where it was


def test_html_escapes_and_converts_the_markdown_subset():
    assert document.inline_html("**a < b** `c|d`") == "<b>a &lt; b</b> <code>c|d</code>"


def _readings(rows, pairs) -> list[dict]:
    """The fixture's rows as two pairs' readings (one pair in two protocols), claims of one
    protocol marked as such, Holm over all of them."""
    from bnstudy.analysis.fidelity import with_holm

    readings = []
    for comparison, reference, treatment, presets in pairs:
        for preset in presets:
            for row in rows:
                free = row["key"] == "shift"
                if free and preset != presets[0]:
                    continue
                readings.append({**row, "comparison": comparison, "reference": reference, "treatment": treatment,
                                 "preset": None if free else preset,
                                 "protocol": row["protocol"].replace("paper", preset) if not free else row["protocol"]})
    return with_holm(readings)


def test_every_reading_sits_beside_the_others_claim_by_claim(three_seeds, paper_optimizer):
    """Two pairs of BN against no BN, the paper's optimizer's read in the paper's protocol and
    the blog's in both: a second table lists each claim's readings together, with the pair's
    optimizer from its own records and Holm over every test of that table."""
    from tests.reporting.conftest import PAPER_OPTIMIZER, record

    seeds = [1337, 1, 2]
    study_records = {"baseline": record(seeds, "none"), "candidate": record(seeds, "batch"),
                     "baseline_sgd": record(seeds, "none", PAPER_OPTIMIZER),
                     "candidate_sgd": record(seeds, "batch", PAPER_OPTIMIZER)}
    rows = three_seeds["fidelity"]["rows"]
    readings = _readings(rows, [("candidate_sgd_vs_baseline_sgd", "baseline_sgd", "candidate_sgd", ["paper"]),
                                ("candidate_vs_baseline", "baseline", "candidate", ["paper", "blog"])])
    assert len(readings) == 3 + 5
    inputs = {**paper_optimizer, "fidelity": {**paper_optimizer["fidelity"], "readings": readings},
              "study_records": study_records}
    markdown = _markdown(inputs)
    table = _table(markdown, "Every reading: pair, optimizer and protocol")
    header, body = table[0], table[1:]
    assert header[4] == "p: raw / Holm (8 tests)"
    assert [row[0] for row in body] == [rows[0]["claim"]] * 3 + [rows[1]["claim"]] * 3 + [
        rows[2]["claim"].replace("|", r"\|")] * 2
    assert body[0][1:3] == ["candidate_sgd vs baseline_sgd: paper optimizer (plain SGD, lr 0.1)", "paper protocol"]
    assert body[1][1:3] == ["candidate vs baseline: blog optimizer (SGD m=0.9, lr 0.035)", "paper protocol"]
    assert body[2][1:3] == ["candidate vs baseline: blog optimizer (SGD m=0.9, lr 0.035)", "blog protocol"]
    by_claim = sorted(readings, key=lambda row: [r["key"] for r in rows].index(row["key"]))
    assert [row[4] for row in body] == [words.p_values(row) for row in by_claim]
    assert "Holm's adjustment runs over every test of this table" in markdown
    # one reading (the headline's own) adds no second table
    single = {**paper_optimizer, "fidelity": {**paper_optimizer["fidelity"], "readings": readings[:3]},
              "study_records": study_records}
    assert "Every reading" not in _markdown(single)


def test_the_report_opens_with_the_summary_box_then_a_table_of_contents(three_seeds):
    """Before any section: the box with each claim, its verdict, its estimate and interval
    and its p raw / Holm (the Fidelity table's own), then the caveats, then a contents list
    whose links are the headings' GitHub anchors (and the HTML page's ids)."""
    built = report.build_report(**three_seeds)
    markdown = document.render_markdown(built, _figures())
    head = markdown.split("\n## ", 1)[0]
    box = [line[2:] for line in head.splitlines() if line.startswith("> |")]
    rows = three_seeds["fidelity"]["rows"]
    assert len(box) == 2 + len(rows)  # header, rule, one line per claim
    for line, row in zip(box[2:], rows, strict=True):
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        assert cells[0] == document.md_cell(row["claim"])
        assert cells[1] == words.agreement(row, 3) and cells[3] == words.p_values(row)
        assert cells[2] == document.md_cell(row["this_run"])
    assert head.index(document.SUMMARY_CAPTION) < head.index("**Contents**")
    links = re.findall(r"^- \[(.+)\]\(#(.+)\)$", head, flags=re.M)
    titles = [s.title for s in built.sections if s.level == 2]
    assert [title for title, _ in links] == titles
    assert ("Setup (provenance)", "setup-provenance") in links
    page = document.render_html(built, _figures())
    for _, anchor in links:
        assert f"id='{anchor}'" in page and f"href='#{anchor}'" in page
    assert page.index("class='summary'") < page.index("<nav>") < page.index("<h2")


def test_anchors_follow_githubs_rule_and_number_repeats():
    sections = [document.Section(t) for t in ("Fidelity", "Gradient ICS, L2 (paper protocol)", "Fidelity",
                                              "Distance: ||W - W_0|| / ||W_0||")]
    assert document.anchors(sections) == ["fidelity", "gradient-ics-l2-paper-protocol", "fidelity-1",
                                          "distance-w---w_0--w_0"]


def test_a_pair_without_claims_is_summarized_by_its_measures(three_seeds):
    three_seeds["records"]["candidate"]["model_config"]["normalization"] = "l1"
    built = report.build_report(**three_seeds)
    measures = three_seeds["comparisons"]["measures"]
    assert built.summary.columns[0] == "measure"
    assert [row[0] for row in built.summary.rows] == [m["label"] for m in measures.values()]


def test_a_folded_sections_tables_are_collapsed_in_both_renderings_and_others_are_not():
    views = document.folded(document.Table(["view", "value"], [["all steps", "ratio 2.00 [1.50, 2.70]"],
                                                                 ["late", "x"]]))
    setup = document.Table(["field", "value"], [["seed", "1337"]])
    doc = document.Report("T", [], [document.Section("Setup", tables=[("Setup", setup)]),
                                    document.Section("ICS", level=3, tables=[("Every view", views)],
                                                     figures=["a", "b"], folded_figures=["b"])],
                          {"a": "shown", "b": "on a click"})
    figures = {"a": b"\x89PNG a", "b": b"\x89PNG b"}
    markdown, page = document.render_markdown(doc, figures), document.render_html(doc, figures)
    assert "<details><summary><b>Figure 2: b</b> (click to show)</summary>\n\n![Figure 2: b]" in markdown
    assert "<summary><b>Figure 1" not in markdown and page.count("<details>") == 2
    folded = "<details><summary><b>Every view</b> (2 rows: click to open)</summary>"
    assert folded in markdown and folded in page
    # the Markdown table sits between blank lines inside <details>, so viewers render it
    assert f"{folded}\n\n| view | value |" in markdown and "| late | x |\n\n</details>" in markdown
    assert page.index(folded) < page.index("ratio 2.00 [1.50, 2.70]") < page.index("</details>")
    assert "**Setup**" in markdown and "<details><summary><b>Setup</b>" not in page
    assert _table(markdown, "Every view")[1] == ["all steps", "ratio 2.00 [1.50, 2.70]"]
