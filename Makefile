# One-command entry points (see README). Each target creates .venv and installs the
# pinned dependencies on first use, so they work on a clean clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ENV ?= cpu
PIPELINE ?= full_study
# Extra parameters for `kedro run --params`, e.g. make study PARAMS="training.max_steps=50" (every
# model) or PARAMS="models.baseline.training.learning_rate=0.1" (one model of the roster)
PARAMS ?=
export KEDRO_DISABLE_TELEMETRY := 1
export MPLBACKEND := Agg

.PHONY: install study beyond paper-optimizer lr-sweep viz-build test test-slow lint docs notebook clean-venv

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

install: $(VENV)/.installed

study: install
	$(BIN)/kedro run --env $(ENV) --pipelines $(PIPELINE)$(if $(PARAMS), --params '$(PARAMS)')

# The static kedro viz site in build/ (kedro viz build --include-previews, plus the api/metadata
# response it leaves out: bnstudy/viz_site.py). Serve it with
# .venv/bin/python -m http.server --bind 127.0.0.1 --directory build 4142
viz-build: install
	$(BIN)/python -m bnstudy.viz_site

# The study and the beyond-the-paper study in one environment (beyond_study reads the
# study's outputs; after a `make study` in the same environment, `kedro run --env <env>
# --pipelines beyond_study` adds the variants alone).
beyond: install
	$(BIN)/kedro run --env $(ENV) --pipelines full_study,beyond_study$(if $(PARAMS), --params '$(PARAMS)')

# The pair with the paper's optimizer (plain SGD, lr 0.1; full_study trains it with the blog's):
# `make study` with PIPELINE=paper_optimizer_study (its own data, training, analysis and report).
paper-optimizer: PIPELINE = paper_optimizer_study
paper-optimizer: study

# Both pairs over their grids of learning rates x seeds (the paper's Figs 1 and 3).
lr-sweep: PIPELINE = lr_sweep_study
lr-sweep: study

# The fast suite (a few minutes); `make test-slow` runs the end-to-end sessions, subprocess
# runs and whole-program compilations that it leaves out. CI (.ci/run) runs both.
# The fast suite compiles a few hundred tiny programs: XLA's CPU backend at LLVM -O1 compiles
# them about 1.5x faster, and they run as well (the same HLO; the float64 reference checks
# pass unchanged). `make test-slow` and every study keep XLA's default optimization level.
# (-O0 is no option: with jaxlib 0.10.2, XLA:CPU then computes NaNs in the reference checks.)
FAST_XLA_FLAGS := --xla_backend_optimization_level=1
test: install
	XLA_FLAGS="$$XLA_FLAGS $(FAST_XLA_FLAGS)" $(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

test-slow: install
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests benchmarks

clean-venv:
	rm -rf $(VENV)

# The documentation site: Sphinx + MyST over docs/*.md, warnings as errors (CI runs it).
docs: install
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	@echo "Built docs/_build/html/index.html"

# Execute notebooks/explore_study.ipynb headless against your newest study of ENV (run
# `make study ENV=...` first); the stored notebook stays without outputs.
notebook: install
	BNSTUDY_ENV=$(ENV) $(BIN)/pytest -p no:cacheprovider --nbmake notebooks/explore_study.ipynb
