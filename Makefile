# One-command entry points (see README). Each target creates .venv and installs the
# pinned dependencies on first use, so they work on a clean clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ENV ?= cpu
PIPELINE ?= full_study
# Extra parameters for `kedro run --params`, e.g. make study PARAMS="preprocessing.train_size=1000,training.epochs=2"
PARAMS ?=
export KEDRO_DISABLE_TELEMETRY := 1
export MPLBACKEND := Agg

.PHONY: install study test lint clean-venv

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

install: $(VENV)/.installed

study: install
	$(BIN)/kedro run --env $(ENV) --pipelines $(PIPELINE)$(if $(PARAMS), --params '$(PARAMS)')

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests benchmarks

clean-venv:
	rm -rf $(VENV)
