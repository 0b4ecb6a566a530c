"""A worker started the Prefect way (`prefect worker start --pool paramaudit-pool` in the checkout,
no PARAMAUDIT_HOME) finds the checkout itself; one that cannot find it fails the flow run with the
reason as the run's state message, and the worker's "Crashed" report does not replace it.

The session's real `prefect server` (tests/conftest.py; no other test deploys to it) and one plain
worker for the module, everything under the suite's network guard; the failing case runs first
because it is quick.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import servers as srv

pytestmark = pytest.mark.integration

ROOT = srv.ROOT
POOL = "paramaudit-pool"
NIGHTLY = "paramaudit-pipeline/nightly"


@dataclass
class Site:
    work: Path
    guard: Path
    api: str  # the session's Prefect server (tests/conftest.py), which no other test deploys to
    worker: srv.Service


@contextlib.contextmanager
def _client(site: Site) -> Iterator[Any]:
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: site.api,
                                     PREFECT_HOME: str(site.work / "prefect-test")}), \
            get_client(sync_client=True) as client:
        yield client


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, _prefect_server: str) -> Iterator[Site]:
    work = tmp_path_factory.mktemp("worker-checkout")
    guard = work / "netguard"
    worker = None
    started = time.monotonic()
    try:
        api = _prefect_server
        cli = srv.prefect_env(api, work / "prefect-cli", guard)
        prefect_bin = str(srv.BIN / "prefect")
        server_up = time.monotonic()
        srv.run_checked([prefect_bin, "work-pool", "create", POOL, "--type", "process"], cli,
                        ROOT, work / "pool.log")
        pool_made = time.monotonic()
        # the worker as Prefect's docs start it: in the checkout, venv on PATH, no PARAMAUDIT_HOME;
        # it starts while the deployment is made (neither needs the other)
        worker_env = srv.prefect_env(
            api, work / "prefect-worker", guard,
            MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}",
            PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="5")
        assert "PARAMAUDIT_HOME" not in worker_env
        worker = srv.spawn("prefect worker", [prefect_bin, "worker", "start", "--pool", POOL],
                           worker_env, work / "worker.log", cwd=ROOT, graceful_signals=2)
        srv.run_checked([prefect_bin, "--no-prompt", "deploy", "--name", "nightly"], cli, ROOT,
                        work / "deploy.log")
        deployed = time.monotonic()
        srv.wait_worker(worker, api, POOL)
        print(f"server {server_up - started:.1f} s, pool {pool_made - server_up:.1f} s, deploy "
              f"{deployed - pool_made:.1f} s, worker online {time.monotonic() - pool_made:.1f} s "
              f"after the pool; logs in {work}")
        yield Site(work, guard, api, worker)
    finally:
        if worker is not None:
            with contextlib.suppress(Exception):
                worker.stop()
        _remove_run_folders(work / "mlflow.db")


def _remove_run_folders(store: Path) -> None:
    """The smoke run worked in the checkout: remove its scratch folder there, nothing else."""
    if not store.exists():
        return
    with contextlib.closing(sqlite3.connect(store)) as db:
        run_ids = [row[0] for row in db.execute(
            "SELECT run_uuid FROM tags WHERE key = 'prefect_flow_run_id'")]
    for run_id in run_ids:
        shutil.rmtree(ROOT / ".paramaudit" / "runs" / run_id, ignore_errors=True)


def _trigger(site: Site, config: dict[str, Any], **job_variables: Any) -> str:
    with _client(site) as client:
        dep = client.read_deployment_by_name(NIGHTLY)
        run = client.create_flow_run_from_deployment(dep.id, parameters={"config": config},
                                                     job_variables=job_variables or None)
    return str(run.id)


def _wait_final(site: Site, flow_run_id: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    with _client(site) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_final():
                return run
            if time.monotonic() > deadline or not site.worker.alive():
                raise AssertionError(f"flow run {flow_run_id} still {run.state and run.state.name}"
                                     f" after {timeout:.0f} s: {site.worker.describe()}")
            time.sleep(0.5)


def _logs(site: Site, flow_run_id: str) -> str:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with _client(site) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                                limit=200)
    return "\n".join(log.message for log in logs)


def _smoke(site: Site, experiment: str) -> dict[str, Any]:
    return {"experiment": experiment, "smoke": True, "data": {"dataset": "iris"},
            "tracking": {"artifact_location": str(site.work / "mlartifacts")}}


def test_the_deployment_records_where_it_was_deployed_from(site: Site) -> None:
    with _client(site) as client:
        dep = client.read_deployment_by_name(NIGHTLY)
    locate, chdir = dep.pull_steps
    # the build step's output was filled in at deploy time; the choice is the worker's, at run time
    assert locate == {"paramaudit.app.deploy_steps.locate_checkout": {
        "id": "checkout", "deployed_from": str(ROOT)}}
    assert chdir == {"prefect.deployments.steps.set_working_directory": {
        "directory": "{{ checkout.directory }}"}}


def test_a_wrong_paramaudit_home_fails_the_run_with_the_reason_as_its_state_message(
        site: Site, tmp_path: Path) -> None:
    empty = tmp_path / "not-a-checkout"
    empty.mkdir()
    flow_run_id = _trigger(site, _smoke(site, "worker-checkout-fail"),
                           env={"PARAMAUDIT_HOME": str(empty)})
    run = _wait_final(site, flow_run_id, 90)
    expected = f"PARAMAUDIT_HOME={empty} is not a paramaudit checkout (no flows/pipeline.py in it)"
    assert run.state.type.value == "FAILED", (run.state, srv.tail(site.worker.log))
    assert (run.state.message or "").startswith(expected), run.state.message
    assert "\n" not in run.state.message

    # the flow-run process then exits non-zero and the worker proposes Crashed: refused, since
    # the run is already final (Prefect's HandleFlowTerminalStateTransitions)
    # the worker logs this advice once both of its Crashed proposals (its run executor's and its
    # own) have been answered (prefect/workers/base.py, after _propose_crashed_state)
    done = "prefect.flow_runs.worker - Check the flow run logs"
    srv.wait_until(lambda: done in srv.tail(site.worker.log, 50_000), site.worker, 60,
                   f"{done!r} in the worker log")
    with _client(site) as client:
        final = client.read_flow_run(flow_run_id)
        history = [s.type.value for s in client.read_flow_run_states(flow_run_id)]
    assert final.state.type.value == "FAILED" and final.state.message == run.state.message
    assert "CRASHED" not in history, history
    assert expected in _logs(site, flow_run_id)  # in the run's logs too, not only the worker's


def _flow_run_process(site: Site, flow_run_id: str, timeout: float) -> srv.Proc:
    """The process Prefect runs the pull steps and the flow in (found by its PREFECT__FLOW_RUN_ID)."""
    mark = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = []
        for proc in srv.family(site.worker.pid):
            with contextlib.suppress(OSError):
                if mark in Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0"):
                    found.append(proc)
        if found:  # the first one started: the flow's own (Ray's processes inherit the variable)
            return min(found, key=lambda p: p.start)
        time.sleep(0.2)
    raise AssertionError(f"no process of flow run {flow_run_id}: {site.worker.describe()}")


def test_a_plain_worker_in_the_checkout_runs_the_nightly_deployment(site: Site) -> None:
    flow_run_id = _trigger(site, _smoke(site, "worker-checkout"))
    # the rule "the worker's working directory" reads the flow-run process's parent (its own is a
    # temporary folder until the pull steps have run): check that it is the worker's child
    proc = _flow_run_process(site, flow_run_id, 60)
    assert proc.ppid == site.worker.pid
    assert Path(os.readlink(f"/proc/{site.worker.pid}/cwd")) == ROOT
    run = _wait_final(site, flow_run_id, 240)
    assert run.state.is_completed(), (f"{run.state.name}: {run.state.message}\n"
                                      f"{srv.tail(site.worker.log, 6000)}")
    assert f"paramaudit checkout {ROOT} (the installed paramaudit package)" in _logs(
        site, flow_run_id)


def test_nothing_left_loopback(site: Site) -> None:
    assert srv.guard_findings(site.guard) == []
