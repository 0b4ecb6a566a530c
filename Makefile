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

.PHONY: install run test test-unit test-integration lint ui bench deploy worker clean

install: $(STAMP)

# Re-installs only when pyproject.toml changes; torch's range (<2.14) keeps pip on the CPU wheel here.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

run: install
	$(BIN)/paramaudit run --config $(CONFIG)

test: install
	$(BIN)/python -m pytest

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
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf .paramaudit mlartifacts mlflow.db bench/results

# Scheduled runs need a Prefect server: `prefect server start --host 127.0.0.1` and
# PREFECT_API_URL=http://127.0.0.1:4200/api in the environment of both targets.
deploy: install
	$(BIN)/prefect work-pool inspect paramaudit-pool >/dev/null 2>&1 || \
	  $(BIN)/prefect work-pool create paramaudit-pool --type process
	PARAMAUDIT_HOME=$(CURDIR) $(BIN)/prefect --no-prompt deploy --all

worker: install
	PARAMAUDIT_HOME=$(CURDIR) PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/prefect worker start --pool paramaudit-pool
