# One command set for quality, locally and in CI.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test lint types pytest distill-local distill-paper

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

types: setup
	$(VENV)/bin/mypy src

pytest: setup
	$(VENV)/bin/pytest

# Sets up, then runs lint, types and the test suite.
test: lint types pytest

# The paper's dBERT-Base from mBERT on OSCAR Tagalog (Hub and GPU).
distill-paper: setup
	$(VENV)/bin/monodistill distill --config configs/dbert-base-mbert-tl.yaml --output runs/dbert-base

# The whole pipeline on the stand-in teacher and corpus in ../shared, on CPU, in minutes.
distill-local: setup
	$(VENV)/bin/monodistill distill --config configs/local-mmt-mini.yaml --output runs/local-mmt-mini
