# One command set for quality, locally and in CI.
VENV ?= .venv
PY := $(VENV)/bin/python
# The newest versions pyproject.toml allows, in a second environment: drift shows the day it is released.
LATEST ?= .venv-latest
LOCK := requirements/lock.txt
# The CPU build of torch first, from this machine's disk: a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: setup test lint types pytest test-latest lock distill-local distill-paper run-local run-paper

# The tested versions of every dependency (requirements/lock.txt), then the project itself without resolving again.
$(VENV)/.installed: pyproject.toml $(LOCK)
	rm -rf $(VENV)
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -r $(LOCK)
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m pip check
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

# The smoke set (pytest -m smoke: distil, evaluate, export, report in a few steps) on the newest versions the
# metadata allows (torch aside), installed afresh each time; it names the releases that differ from the lock.
test-latest:
	rm -rf $(LATEST)
	python3 -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -m pip install -q $(TORCH)
	@# torch itself stays the locked CPU build: its newest release here is a multi-GB CUDA build.
	echo "$(TORCH)" > $(LATEST)/torch-constraint.txt
	$(LATEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -c $(LATEST)/torch-constraint.txt -e '.[dev]'
	@$(LATEST)/bin/python requirements/drift.py $(LOCK) $(LATEST)/bin/python
	@$(LATEST)/bin/python -m pytest -m smoke -p no:cacheprovider || { \
		echo "make test-latest: the smoke tests fail on the newest versions above (the lock's pass: make test)"; exit 1; }

# Regenerates the lock from the newest versions, once the smoke set passes on them (then run make test).
lock: test-latest
	{ sed -n '/^# /p' $(LOCK); echo "$(TORCH)"; \
	  $(LATEST)/bin/python -m pip freeze --exclude-editable | grep -v '^torch=='; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)

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
