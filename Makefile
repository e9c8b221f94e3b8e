# Card-fraud MLOps platform. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
# uv from PATH when present, otherwise a private copy installed with pip into .tools/.
UV := $(or $(shell command -v uv 2>/dev/null),.tools/bin/uv)
PYTEST_ARGS ?=

.PHONY: help install lock demo demo-fast up down status env test bench lint fmt clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create .venv from the pinned lock (idempotent, fast on re-run)

.tools/bin/uv:
	@echo "uv not found on PATH: installing uv $(UV_VERSION) into .tools/ with pip"
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.installed: requirements.txt pyproject.toml | $(UV)
	@test -x $(PY) || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	$(UV) pip sync --quiet --python $(PY) requirements.txt
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	@touch $@
	@echo "installed: $$($(PY) --version), $$($(PY) -c 'import airflow, mlflow; print("airflow", airflow.__version__, "mlflow", mlflow.__version__)')"

lock: | $(UV) ## recompile requirements.txt from requirements.in (Python 3.11, Linux x86_64)
	$(UV) pip compile requirements.in --quiet --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 -o requirements.txt

demo: install ## the main job end to end: 30 simulated days through the Airflow scheduler, then a summary
	$(PY) -m training_lib.demo

demo-fast: install ## the short demo (6 days), as the integration test runs it
	$(PY) -m training_lib.demo --fast

up: install ## start the local stack (S3, MLflow, Airflow on 127.0.0.1) and wait until healthy
	$(PY) -m training_lib.stack up

down: ## stop the local stack's processes by their recorded PIDs
	@if [ -x $(PY) ]; then $(PY) -m training_lib.stack down; else echo "nothing installed, nothing to stop"; fi

status: install ## show PIDs and health of the local stack
	$(PY) -m training_lib.stack status

env: install ## print `export` lines to use the airflow/mlflow CLIs against the local stack
	@$(PY) -m training_lib.stack env

test: install ## run the whole test suite (starts its own stack on free ports)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install ## run every benchmarks/bench_*.py (ratios measured in the same run; not part of make test)
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

lint: install ## ruff check and format check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

fmt: install ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

clean: down ## stop the stack and delete its state (.local/)
	rm -rf .local
