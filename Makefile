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
# make test runs test files in parallel on this many pytest-xdist workers (a file stays on one worker:
# its module-scoped stack is started once). TEST_WORKERS=0 runs them in this process, one after another.
TEST_WORKERS ?= 2
# make test-fast: the unit tests, no local stack started (the inner loop).
FAST_TESTS := -m "not integration and not slow"
# The scale-out topology on this machine (make up-distributed): its own state folder, two Celery workers.
DISTRIBUTED := FRAUD_STATE_DIR=$(CURDIR)/.local/distributed FRAUD_CELERY_WORKERS=$(or $(WORKERS),2)
OS_PACKAGES := postgresql redis-server

.PHONY: help install lock os-packages demo demo-fast up down status env up-distributed down-distributed \
	status-distributed test test-fast bench lint fmt clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

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

os-packages: ## PostgreSQL and Redis servers from the OS packages (Debian/Ubuntu), installed only when missing
	@if command -v redis-server >/dev/null && { command -v postgres >/dev/null || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; }; then \
		echo "os-packages: PostgreSQL and Redis servers present"; \
	else \
		SUDO=""; if [ "$$(id -u)" != 0 ]; then SUDO="sudo -n"; fi; \
		echo "os-packages: installing $(OS_PACKAGES) with apt-get (for make up-distributed and its test)"; \
		$$SUDO mkdir -p /etc/postgresql-common/createcluster.d; \
		echo "create_main_cluster = false  # fraud-platform: no system-wide cluster, the stack runs its own" \
			| $$SUDO tee /etc/postgresql-common/createcluster.d/fraud-platform.conf >/dev/null; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(OS_PACKAGES) \
			|| echo "os-packages: could not install $(OS_PACKAGES) (needs root or password-less sudo): the distributed topology is unavailable"; \
	fi

demo: install ## the main job end to end: 30 simulated days through the Airflow scheduler, then a summary
	$(PY) -m training_lib.local.demo

demo-fast: install ## the short demo (6 days), as the integration test runs it
	$(PY) -m training_lib.local.demo --fast

up: install ## start the local stack (S3, MLflow, Airflow on 127.0.0.1) and wait until healthy
	$(PY) -m training_lib.local.stack up

down: ## stop the local stack's processes by their recorded PIDs
	@if [ -x $(PY) ]; then $(PY) -m training_lib.local.stack down; else echo "nothing installed, nothing to stop"; fi

status: install ## show PIDs and health of the local stack
	$(PY) -m training_lib.local.stack status

env: install ## print `export` lines to use the airflow/mlflow CLIs against the local stack
	@$(PY) -m training_lib.local.stack env

up-distributed: install os-packages ## the scale-out topology here: PostgreSQL, Redis, Celery executor, 2 workers (WORKERS=n)
	$(DISTRIBUTED) $(PY) -m training_lib.local.stack up

down-distributed: ## stop the distributed topology's processes by their recorded PIDs
	@if [ -x $(PY) ]; then $(DISTRIBUTED) $(PY) -m training_lib.local.stack down; else echo "nothing installed, nothing to stop"; fi

status-distributed: install ## show PIDs and health of the distributed topology, workers included
	$(DISTRIBUTED) $(PY) -m training_lib.local.stack status

test: install os-packages ## run the whole test suite on $(TEST_WORKERS) workers (starts its own stacks on free ports)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: install ## the unit tests only (no stack, a few minutes): the inner loop
	$(PY) -m pytest -n $(TEST_WORKERS) $(FAST_TESTS) $(PYTEST_ARGS)

bench: install ## run every benchmarks/bench_*.py (ratios measured in the same run; not part of make test)
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

lint: install ## ruff check and format check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

fmt: install ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

clean: down down-distributed ## stop both stacks and delete their state (.local/)
	rm -rf .local
