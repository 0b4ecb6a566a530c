# paramaudit: `make run` and `make test` install into .venv first when needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CONFIG ?= configs/default.yaml
UI_PORT ?= 5000
export MLFLOW_DISABLE_TELEMETRY ?= true
export DO_NOT_TRACK ?= true
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: install run test test-unit test-integration lint ui bench deploy worker clean services \
	services-status services-down

install: $(STAMP)

# Re-installs only when pyproject.toml changes; torch's range (<2.14) keeps pip on the CPU wheel here.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

run: install
	$(BIN)/paramaudit run --config $(CONFIG)

# Two pytest workers, one test file each at a time (a file's module fixtures stay in one process):
# most of a test's time is a process starting, which leaves a core free on a 2-core machine.
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=15

test-unit: install
	$(BIN)/python -m pytest tests/unit

test-integration: install
	$(BIN)/python -m pytest tests/integration

lint: install
	$(BIN)/ruff check .

ui: install
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db \
	  --default-artifact-root ./mlartifacts --host 127.0.0.1 --port $(UI_PORT)

bench: install
	$(BIN)/python bench/pipeline.py --repeat 3

clean:
	rm -rf .paramaudit mlartifacts mlflow.db bench/results

# Scheduled runs (prefect.yaml): a Prefect server, then `make deploy` once and `make worker` on every
# machine that runs flows. Both talk to the server named by PREFECT_API_URL (environment or the
# active Prefect profile), e.g. after `prefect server start --host 127.0.0.1`:
#   export PREFECT_API_URL=http://127.0.0.1:4200/api
# A worker finds the checkout itself when a run starts (prefect.yaml's pull step); `make worker`
# names this one with PARAMAUDIT_HOME (the override for workers elsewhere) and puts this venv first
# on PATH; its environment (MLFLOW_TRACKING_URI, RAY_ADDRESS) reaches every flow run. `make deploy`
# records this folder in the deployments (their build step) as a hint for workers on this machine.
POOL ?= paramaudit-pool
PREFECT_API_CHECK = @$(BIN)/prefect config view 2>/dev/null | grep -q '^PREFECT_API_URL=' || \
	{ echo "make $@: PREFECT_API_URL is not set; start a server (prefect server start --host 127.0.0.1)" \
	  "and export PREFECT_API_URL=http://127.0.0.1:4200/api" >&2; exit 2; }

deploy: install
	$(PREFECT_API_CHECK)
	$(BIN)/prefect work-pool inspect $(POOL) >/dev/null 2>&1 || \
	  $(BIN)/prefect work-pool create $(POOL) --type process
	env -u PARAMAUDIT_HOME $(BIN)/prefect --no-prompt deploy --all

worker: install
	$(PREFECT_API_CHECK)
	PARAMAUDIT_HOME=$(CURDIR) PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/prefect worker start --pool $(POOL)

# The team's stack on this machine (paramaudit/app/services.py): PostgreSQL with a database each
# for MLflow and Prefect, both servers on it, the deployments and a worker, all on 127.0.0.1 and
# under SERVICES_DIR; `. $(SERVICES_DIR)/env` points a shell at it. Stopped by PID; data stays.
SERVICES_DIR ?= .paramaudit/services
services: install
	$(BIN)/python -m paramaudit.app.services up --dir $(SERVICES_DIR)

services-status: install
	$(BIN)/python -m paramaudit.app.services status --dir $(SERVICES_DIR)

services-down: install
	$(BIN)/python -m paramaudit.app.services down --dir $(SERVICES_DIR)
