"""Shared fixtures: a private working directory, a sqlite MLflow store, and the network guard."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paramaudit.environment import TELEMETRY_OFF, quiet_environment

ROOT = Path(__file__).resolve().parents[1]
NETGUARD = ROOT / "tests" / "support" / "netguard"

# telemetry off and servers on loopback for everything the tests start, as the CLI does
quiet_environment()


# The API of the session's shared Prefect server while a module that asked for it runs (see
# shared_prefect); empty otherwise, and each `paramaudit run` starts its own temporary server.
_SHARED_PREFECT: dict[str, str] = {}


def cli_env(workdir: Path, guard_dir: Path | None = None, embedded: bool = False,
            **extra: str) -> dict[str, str]:
    """Environment for a `paramaudit` subprocess: its own store, Prefect home and guard.

    In a module using ``shared_prefect`` the run talks to that server unless ``embedded``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "MLFLOW_"))}
    env.update(
        TELEMETRY_OFF,  # MLflow's switch went with the MLFLOW_ variables above
        MLFLOW_TRACKING_URI=f"sqlite:///{workdir / 'mlflow.db'}",
        PREFECT_HOME=str(workdir / "prefect-home"),
        PYTHONUNBUFFERED="1",
    )
    if _SHARED_PREFECT and not embedded:
        env["PREFECT_API_URL"] = _SHARED_PREFECT["api"]
    if guard_dir is not None:
        guard_dir.mkdir(parents=True, exist_ok=True)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(NETGUARD)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        )
        env["PARAMAUDIT_NETGUARD_DIR"] = str(guard_dir)
        env["PARAMAUDIT_NETGUARD_BLOCK"] = "1"
    env.update(extra)
    return env


def paramaudit_cmd() -> list[str]:
    """The installed console script, run with this interpreter."""
    return [sys.executable, "-m", "paramaudit.app.cli"]


def guard_findings(guard_dir: Path) -> list[str]:
    """Every non-loopback attempt the guard logged."""
    lines: list[str] = []
    for log in sorted(guard_dir.glob("net-*.log")):
        lines += log.read_text().splitlines()
    return lines


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private working directory (mlflow.db, mlartifacts and .paramaudit land here)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def _prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Prefect server for the session (per xdist worker), started when first asked for."""
    from support import servers as srv

    work = tmp_path_factory.mktemp("shared-prefect")
    guard = work / "netguard"
    server = srv.start_prefect_server(work / "home", work / "server.log", guard)
    try:
        srv.wait_prefect_server(server)
        yield f"{server.url}/api"
    finally:
        server.stop()
    assert srv.guard_findings(guard) == []


@pytest.fixture(scope="module")
def shared_prefect(_prefect_server: str) -> Iterator[str]:
    """The module's `paramaudit run`s use the session's Prefect server (cli_env sets it).

    Starting a temporary server is most of a small run's cost on two cores; the runs that test
    that server (test_startup, test_pipeline_cli, test_stop_signal) do not use this.
    """
    _SHARED_PREFECT["api"] = _prefect_server
    try:
        yield _prefect_server
    finally:
        _SHARED_PREFECT.clear()


# The longest files first: xdist (--dist loadfile) hands files out in collection order, so with
# these at the front and the quick unit files last the two workers finish together.
_LONGEST_FIRST = ("test_resume", "test_services", "test_search", "test_operations",
                  "test_reliability", "test_bad_inputs", "test_stop_signal", "test_startup",
                  "test_worker_checkout", "test_cluster",
                  "test_pipeline_cli", "test_tables", "test_overfit_gate", "test_cli",
                  "test_flows_prefect", "test_champion_serving", "test_user_model")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


@pytest.fixture
def run_pipeline(shared_prefect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The pipeline flow run in this process against the session's Prefect server.

    For tests of what the pipeline does rather than of the command line: it skips the ~10 s a
    `paramaudit run` process spends importing and starting up. Its store and work folder are
    the test's tmp_path; it returns the flow's summary.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from paramaudit.config import build_config
    from paramaudit.flows.pipeline import paramaudit_pipeline

    monkeypatch.chdir(tmp_path)

    def run(raw: dict[str, Any]) -> dict[str, Any]:
        tracking = {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                    "artifact_location": str(tmp_path / "mlartifacts")}
        from prefect.logging.handlers import APILogHandler

        with temporary_settings(updates={PREFECT_API_URL: shared_prefect}):
            try:
                return paramaudit_pipeline(config=build_config({**raw, "tracking": tracking}))
            finally:
                APILogHandler().flush()  # the flow run's logs, sent while the server is up

    return run
