"""Running `paramaudit run` from a test: its config file, the process, the trials' MLflow runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from conftest import cli_env, paramaudit_cmd


def write_config(work: Path, config: dict) -> None:
    """``config`` as ``cfg.yaml`` in the working directory."""
    (work / "cfg.yaml").write_text(yaml.safe_dump(config))


def cli_run(work: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``paramaudit run ARGS`` in ``work``, with the tests' environment, output captured."""
    return subprocess.run(paramaudit_cmd() + ["run", *args], cwd=work, env=cli_env(work),
                          capture_output=True, text=True, timeout=timeout)


def child_runs(work: Path, parent: str) -> list:
    """The MLflow runs nested under ``parent`` in the working directory's store."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    run = client.get_run(parent)
    return client.search_runs([run.info.experiment_id],
                              f"tags.`mlflow.parentRunId` = '{parent}'", max_results=1000)
