"""`make services`: PostgreSQL, MLflow and Prefect on it, the deployments and a worker, on
127.0.0.1 under one folder; a pipeline run against it; down and up again with the data kept."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, cli_env, guard_findings, paramaudit_cmd

pytestmark = pytest.mark.integration


def _make(verb: str, stack: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-o", "install", verb,
                           f"SERVICES_DIR={stack}"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict]:
    # PostgreSQL runs as the postgres user, which must reach its folder: pytest's own temporary
    # folders are private to this user, so the stack lives in one of its own under /tmp
    base = Path(tempfile.mkdtemp(prefix="pa-services-"))
    base.chmod(0o755)
    folder = base / "stack"
    env = cli_env(tmp_path, guard_dir=tmp_path / "guard")
    try:
        yield {"dir": folder, "env": env, "guard": tmp_path / "guard"}
    finally:
        _make("services-down", folder, env)
        shutil.rmtree(base, ignore_errors=True)


def _state(folder: Path) -> dict:
    return json.loads((folder / "state.json").read_text())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] not in "ZX"


def test_the_stack_starts_serves_a_run_stops_and_keeps_its_data(
        stack: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, env = stack["dir"], stack["env"]
    up = _make("services", folder, env)
    assert up.returncode == 0, up.stdout + up.stderr
    state = _state(folder)
    assert set(state["pids"]) == {"postgres", "mlflow", "prefect", "worker"}
    assert all(_alive(pid) for pid in state["pids"].values())
    for name in ("postgres", "mlflow", "prefect", "worker"):
        assert f"  {name:<9} up" in up.stdout
    env_file = folder / "env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert (folder / "secrets.json").stat().st_mode & 0o777 == 0o600
    exports = dict(line.removeprefix("export ").split("=", 1)
                   for line in env_file.read_text().splitlines())
    kept = json.loads((folder / "secrets.json").read_text())
    assert exports == {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{state['ports']['mlflow']}",
                       "PREFECT_API_URL": f"http://127.0.0.1:{state['ports']['prefect']}/api",
                       "MLFLOW_TRACKING_USERNAME": "paramaudit",
                       "MLFLOW_TRACKING_PASSWORD": kept["mlflow"],
                       "PREFECT_API_AUTH_STRING": f"paramaudit:{kept['prefect']}"}
    # without the credentials both servers answer 401; with them, 200
    mlflow_api = f"{exports['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/experiments/search?max_results=1"
    prefect_api = f"{exports['PREFECT_API_URL']}/flows/filter"
    assert _status(mlflow_api) == 401 == _status(prefect_api, post=True)
    assert _status(mlflow_api, f"paramaudit:{kept['mlflow']}") == 200
    assert _status(prefect_api, exports["PREFECT_API_AUTH_STRING"], post=True) == 200
    # a second `make services` while it runs says so and changes nothing
    again = _make("services", folder, env)
    assert again.returncode == 0 and "already running" in again.stdout
    assert _state(folder) == state

    # a run against the stack: its MLflow runs in PostgreSQL, its flow run on the server
    run_env = {**env, **exports}
    proc = subprocess.run(paramaudit_cmd() + ["run", "--dataset", "iris", "--smoke", "--experiment",
                                              "team", "--output-json", "out.json"],
                          cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    from mlflow import MlflowClient

    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):  # this test's client
        monkeypatch.setenv(name, exports[name])
    client = MlflowClient(tracking_uri=exports["MLFLOW_TRACKING_URI"])
    assert client.get_run(out["mlflow_run_id"]).info.status == "FINISHED"
    assert client.get_model_version_by_alias("team", "champion").run_id == out["mlflow_run_id"]
    auth = exports["PREFECT_API_AUTH_STRING"]
    deployments = {d["name"] for d in _json(f"{exports['PREFECT_API_URL']}/deployments/filter",
                                            auth, post=True)}
    assert {"nightly", "weekly-bayes", "weekly-audit"} <= deployments
    # the pool runs one flow run at a time: a schedule catching up queues, it does not pile up
    assert _json(f"{exports['PREFECT_API_URL']}/work_pools/paramaudit-pool", auth)[
        "concurrency_limit"] == 1
    flow_run = _json(f"{exports['PREFECT_API_URL']}/flow_runs/{out['prefect_flow_run_id']}", auth)
    assert flow_run["state_type"] == "COMPLETED"
    # the passwords stay in the folder's secrets: not in logs, the summary or MLflow's params
    logs = "".join(p.read_text(errors="replace") for p in (folder / "logs").glob("*.log"))
    seen = logs + proc.stdout + proc.stderr + json.dumps(out) + json.dumps(
        client.get_run(out["mlflow_run_id"]).data.params) + json.dumps(
        client.get_run(out["mlflow_run_id"]).data.tags)
    for name in ("db", "mlflow", "prefect"):
        assert kept[name] not in seen, name

    down = _make("services-down", folder, env)
    assert down.returncode == 0, down.stderr
    assert not any(_alive(pid) for pid in state["pids"].values())
    status = _make("services-status", folder, env)
    assert status.returncode != 0 and "  mlflow    down" in status.stdout
    # up again: the same ports, and the runs are still there
    back = _make("services", folder, env)
    assert back.returncode == 0, back.stdout + back.stderr
    assert _state(folder)["ports"] == state["ports"]
    client = MlflowClient(tracking_uri=exports["MLFLOW_TRACKING_URI"])
    assert client.get_run(out["mlflow_run_id"]).info.status == "FINISHED"
    assert guard_findings(stack["guard"]) == []


def _request(url: str, auth: str | None, post: bool) -> urllib.request.Request:
    req = urllib.request.Request(url, data=b"{}" if post else None,
                                 headers={"Content-Type": "application/json"})
    if auth is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    return req


def _status(url: str, auth: str | None = None, post: bool = False) -> int:
    try:
        with urllib.request.urlopen(_request(url, auth, post), timeout=10) as resp:  # noqa: S310
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def _json(url: str, auth: str, post: bool = False) -> Any:
    with urllib.request.urlopen(_request(url, auth, post), timeout=10) as resp:  # noqa: S310
        return json.load(resp)
