# visrec: one command sets up and runs the demo (`make run`), one runs the tests (`make test`).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DEMO := data/01_raw/demo
# Generated, git-ignored; `plots.html_template` in .dvc/config.local (this checkout only,
# relative to .dvc/) names it once it exists, so a checkout without it keeps DVC's CDN page.
PLOTS_TEMPLATE := .dvc/plots/offline.html
# The DVC stages `kedro run` (the train pipeline) makes; metric_learning has its own target.
TRAIN_STAGES := parameters demo_data ingestion class_balance augmentation tuning training evaluation export

# No usage reporting from Kedro or DVC, here or in CI.
export KEDRO_DISABLE_TELEMETRY := 1
export DVC_NO_ANALYTICS := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# dvc.yaml stages call `kedro`: the venv comes first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install plots-template demo-data parameters notebook-docs run metric-learning test test-fast lint docs viz repro plots clean

## install: create .venv with the pinned dependencies and visrec (editable), and the plots template
install: $(VENV)/.installed
	@if $(MAKE) --no-print-directory $(PLOTS_TEMPLATE); then \
		$(BIN)/dvc config --local plots.html_template plots/offline.html; \
	else echo "warning: no offline template for dvc plots (it needs npm once):" \
		"dvc plots show will load vega from a CDN" >&2; fi

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

## plots-template: inline vega, vega-lite and vega-embed (npm, cached) in the page `dvc plots show` writes
plots-template: $(PLOTS_TEMPLATE)

# Remade when the script (its pinned versions) changes; the npm tarballs are cached in
# ~/.cache/visrec/npm, so only the first build needs the npm registry. The script leaves
# an unchanged template alone: touch it so that make sees it up to date.
$(PLOTS_TEMPLATE): tools/plots_template.py | $(VENV)/.installed
	$(BIN)/python tools/plots_template.py --output $@
	touch $@

## demo-data: write the digits image folder to data/01_raw/demo when it is missing
demo-data: install
	@if [ -z "$$(find $(DEMO) -name '*.png' -print -quit 2>/dev/null)" ]; then \
		$(BIN)/kedro run --pipelines=demo_data; \
	else echo "demo data present in $(DEMO)"; fi

## parameters: write the parameters a run uses (conf/, then params.yaml), as DVC's first stage does
parameters: install
	$(BIN)/visrec params --out data/05_model_input/parameters.yml \
		--data-roots data/05_model_input/data_roots.yml

## run: set up, make the demo data when missing, run the default pipeline (train)
run: demo-data parameters
	$(BIN)/kedro run
	@# Record what `kedro run` made in dvc.lock, so that `dvc repro` reruns only what changes
	@# (DVC needs the git checkout; a copy without .git skips this step).
	@if [ -d .git ]; then $(BIN)/dvc commit --force --quiet $(TRAIN_STAGES); fi

## metric-learning: the metric-learning demo (digits 0-4 train, 5-9 test): ingestion, embedding
metric-learning: demo-data parameters
	$(BIN)/kedro run --pipelines=metric_learning
	@if [ -d .git ]; then $(BIN)/dvc commit --force --quiet parameters demo_data ingestion \
		metric_learning; fi

## test: set up, then run the whole test suite
test: install
	$(BIN)/python -m pytest

## test-fast: the tests without the slow end-to-end CLI runs
test-fast: install
	$(BIN)/python -m pytest -m "not slow"

## lint: ruff over src/, tests/, benchmarks/ and tools/; the type checker (mypy) over src/
lint: install
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/mypy

## notebook-docs: run notebooks/exploration.ipynb on the last run and render it in docs/exploration.md
notebook-docs: install
	$(BIN)/python tools/render_notebook.py

## docs: regenerate docs/parameters.md from the parameter models and conf/base
docs: install
	$(BIN)/python tools/parameters_doc.py

## viz: kedro viz on http://127.0.0.1:4141
viz: install
	$(BIN)/kedro viz run --host 127.0.0.1 --port 4141

## repro: the DVC pipeline (stages run only when their inputs changed)
repro: install
	$(BIN)/dvc repro

## plots: the DVC plots in dvc_plots/index.html, which renders offline (after `make run`)
plots: install
	$(BIN)/dvc plots show

clean:
	-$(BIN)/dvc config --local --unset plots.html_template 2>/dev/null
	rm -rf $(VENV) .pytest_cache .ruff_cache $(PLOTS_TEMPLATE)
