# One command set for quality, locally and in CI.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test lint types pytest distill-local distill-paper run-local run-paper

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed
	@# Headless Chromium for the HTML report's browser test, where apt-get can install it (else that test skips).
	@if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed"; fi

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

types: setup
	$(VENV)/bin/mypy src

pytest: setup
	$(VENV)/bin/pytest

# Sets up, then runs lint, types and the test suite.
test: lint types pytest

# The paper's experiment: dBERT-Base and -Tiny from mBERT on OSCAR Tagalog, evaluated on the three
# Tagalog tasks, with the report (Hub and GPU).
run-paper: setup
	$(VENV)/bin/monodistill run --config configs/paper-dbert.yaml --output runs/paper-dbert

# The same pipeline on the stand-in teacher, corpus and tasks in ../shared, on CPU, in minutes.
run-local: setup
	$(VENV)/bin/monodistill run --config configs/local-quickstart.yaml --output runs/local-quickstart

# The paper's dBERT-Base from mBERT on OSCAR Tagalog, distillation only (Hub and GPU).
distill-paper: setup
	$(VENV)/bin/monodistill distill --config configs/dbert-base-mbert-tl.yaml --output runs/dbert-base

# Distillation only, on the stand-in teacher and corpus in ../shared, on CPU, in minutes.
distill-local: setup
	$(VENV)/bin/monodistill distill --config configs/local-mmt-mini.yaml --output runs/local-mmt-mini
