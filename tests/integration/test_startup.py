"""Start-up: Prefect's server started by the CLI, and trials on Ray's pre-started warm workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_env, paramaudit_cmd
from support import servers as srv

from paramaudit.app import prefect_server
from paramaudit.app.prefect_server import EmbeddedPrefectServer
from paramaudit.runs import search_dir

pytestmark = pytest.mark.integration

@pytest.fixture
def prefect_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "prefect-home"
    monkeypatch.setenv("PREFECT_HOME", str(home))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    return home


def test_embedded_server_answers_on_loopback_only_and_stops_by_pid(prefect_home: Path) -> None:
    server = EmbeddedPrefectServer()
    assert server.process is not None
    pid = server.process.pid
    try:
        server.wait_ready(timeout=120)
        with urllib.request.urlopen(f"{server.api_url}/health", timeout=10) as resp:
            assert resp.status == 200
        listening = {addr for addr, port in srv.listeners() if port == server.port}
        assert listening == {"127.0.0.1"}, listening
    finally:
        server.stop()
    assert not srv.pid_alive(pid)
    assert not any(port == server.port for _, port in srv.listeners())
    server.stop()  # a second stop is harmless


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_gated_server_waits_for_release_and_is_killed_untouched_without_it(
        prefect_home: Path) -> None:
    held = EmbeddedPrefectServer(gated=True)
    assert held.process is not None
    pid = held.process.pid
    # its imports done, it waits on stdin: its CPU time stops growing (bounded wait)
    deadline, last = time.monotonic() + 120, -1.0
    while time.monotonic() < deadline:
        now = _cpu_seconds(pid)
        if now == last and now > 0.5:
            break
        last = now
        time.sleep(1.0)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{held.api_url}/health", timeout=2)
    started = time.monotonic()
    held.stop()
    assert srv.wait_gone(pid) and time.monotonic() - started < 5
    assert not (prefect_home / "prefect.db").exists()  # never created: it never went on

    released = EmbeddedPrefectServer(gated=True)
    try:
        released.release()
        released.wait_ready(timeout=120)
        assert (prefect_home / "prefect.db").exists()
    finally:
        released.stop()


def test_bad_input_kills_the_server_that_imported_during_the_checks(tmp_path: Path) -> None:
    """The CLI starts the server gated before it checks the input; bad input kills it."""
    (tmp_path / "data.csv").write_text("a,b\n1,2\n3,4\n")
    home = tmp_path / "prefect-home"
    proc = subprocess.Popen(paramaudit_cmd() + ["run", "--data", "data.csv", "--target", "y"],
                            cwd=tmp_path, env=cli_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen: set[int] = set()
    while proc.poll() is None:
        seen.update(srv.prefect_servers_with_home(home))
        time.sleep(0.01)
    _, err = proc.communicate()
    assert proc.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "'y'" in lines[0], err
    assert seen, "no Prefect server was seen while the input was checked"
    assert all(srv.wait_gone(pid) for pid in seen)
    assert not (home / "prefect.db").exists()


def test_embedded_server_exits_with_its_parent_even_on_sigkill(prefect_home: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from paramaudit.app.prefect_server import EmbeddedPrefectServer\n"
         "s = EmbeddedPrefectServer()\n"
         "print(s.process.pid, flush=True)\n"
         "time.sleep(600)\n"],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    assert parent.stdout is not None
    server_pid = int(parent.stdout.readline())
    assert srv.pid_alive(server_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=30)
    assert srv.wait_gone(server_pid), "the server outlived the CLI that started it"


def test_a_server_that_cannot_start_is_reported_with_its_output(
        prefect_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(prefect_server, "_free_port", lambda: taken.getsockname()[1])
        # one launch is enough to see the report (the retries are the next test's business)
        monkeypatch.setattr(EmbeddedPrefectServer, "RETRIES", 1)
        server = EmbeddedPrefectServer()
        with pytest.raises(RuntimeError, match="exited before it was ready: .*"):
            server.wait_ready(timeout=120)
        server.stop()


def test_a_server_not_ready_in_time_is_stopped_and_reported(prefect_home: Path) -> None:
    server = EmbeddedPrefectServer()
    assert server.process is not None
    pid = server.process.pid
    with pytest.raises(RuntimeError, match=r"not ready within 0 s \(PREFECT_SERVER_EPHEMERAL"):
        server.wait_ready(timeout=0)
    assert srv.wait_gone(pid)


def _iris_search(workdir: Path, trials: int, max_concurrent: int) -> tuple[Any, ...]:
    """A search of 1-epoch iris trials: its config, splits and tracker."""
    from paramaudit.config import build_config
    from paramaudit.pipeline import preprocess
    from paramaudit.tracking import Tracker

    cfg = build_config({
        "experiment": "warm", "data": {"dataset": "iris"},
        "search": {"trials": trials, "max_concurrent": max_concurrent, "scheduler": "none"},
        "train": {"max_epochs": 1},
        "tracking": {"tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}"},
    }).effective()
    return cfg, preprocess(cfg), Tracker(cfg.tracking, cfg.experiment)


def test_trials_run_in_the_workers_ray_started_before_the_search(workdir: Path) -> None:
    from paramaudit.search import ray_session, run_search, trial_slots

    cfg, splits, tracker = _iris_search(workdir, trials=3, max_concurrent=1)
    with tracker.parent_run("warm", {}) as parent, ray_session(cfg.ray, trial_slots(cfg)) as info:
        assert info["cpus"] == 1  # one trial at a time: one CPU, one pre-started worker
        with ray_session(cfg.ray) as nested:  # the flow's own session, inside the CLI's
            assert nested == {"address": "local", "started": False, "reused": True, "cpus": 1}
        workers = _ray_workers(info["cpus"])
        outcome = run_search(splits, cfg, tracker, parent, search_dir(workdir), say=lambda _m: None)
    pids = {t.worker_pid for t in outcome.records}
    assert None not in pids
    # each trial ran in a process that existed before the search: Ray's pre-started worker,
    # reused (no new Python process started and warmed up per trial actor)
    assert pids <= workers, (pids, workers)


def test_a_search_of_quick_trials_keeps_its_warm_workers_and_writes_no_tune_result_files(
        workdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Trials quicker than an actor's start: Tune must not stop an actor that holds a warm worker.

    Tune hands a finished trial's cached actor to a trial whose own actor is still being
    created, and stops that one; its worker process ends with it, and the next actor waits for
    a fresh process's imports (search.ray_internals.started_actors_kept). Without that fix this failed in 3
    runs of 6.
    """
    from paramaudit.search import ray_session, run_search, trial_slots

    cfg, splits, tracker = _iris_search(workdir, trials=24, max_concurrent=2)
    with tracker.parent_run("quick", {}) as parent, ray_session(cfg.ray, trial_slots(cfg)) as info:
        assert info["cpus"] == 2
        workers = _ray_workers(2)
        outcome = run_search(splits, cfg, tracker, parent, search_dir(workdir), say=lambda _m: None)
    assert len(outcome.records) == 24 and all(t.status == "TERMINATED" for t in outcome.records)
    # both pre-started workers ran trials, and nothing else did: neither lost its actor unused
    pids = {t.worker_pid for t in outcome.records}
    assert pids == workers, (pids, workers)
    # Tune's own result files are off (MLflow has the results), and Tune does not warn of them
    written = {f.name for f in search_dir(workdir).rglob("*") if f.is_file()}
    assert not written & {"result.json", "progress.csv", "params.json"}, written
    assert not any(f.startswith("events.out.tfevents") for f in written), written
    assert "Failed to fetch metrics" not in caplog.text


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state letter


def _descends_from_this_process(pid: int) -> bool:
    me = os.getpid()
    for _ in range(64):
        parent = _parent(pid)
        if parent is None or parent <= 1:
            return False
        if parent == me:
            return True
        pid = parent
    return False


def _python_workers() -> set[int]:
    """PIDs of this process's own Ray's Python worker processes, idle or running an actor.

    Only the descendants of this process: the other pytest worker may run a Ray of its own.
    """
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        agent = cmd.startswith((b"ray::DashboardAgent", b"ray::RuntimeEnvAgent"))
        raylet = cmd.split(b" ", 1)[0].endswith(b"raylet")  # its command line names the worker's
        if not agent and not raylet and (cmd.startswith(b"ray::") or b"default_worker.py" in cmd):
            if _descends_from_this_process(int(entry.name)):
                found.add(int(entry.name))
    return found


def _ray_workers(wanted: int, within: float = 60.0) -> set[int]:
    """PIDs of the local Ray's worker processes, once ``wanted`` of them have started."""
    deadline = time.monotonic() + within
    found: set[int] = set()
    while time.monotonic() < deadline:
        found = _python_workers()
        if len(found) >= wanted:
            return found
        time.sleep(0.1)
    raise AssertionError(f"Ray started {len(found)} of {wanted} workers within {within} s")


def test_a_server_whose_start_fails_is_started_again_on_another_port(
        prefect_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn exits with 3 when its application cannot start (a taken port here; two pipelines
    creating one Prefect database at once in the wild): the server is launched again."""
    free = prefect_server._free_port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1]])
        monkeypatch.setattr(prefect_server, "_free_port", lambda: next(ports, None) or free())
        server = EmbeddedPrefectServer()
        try:
            server.wait_ready(timeout=120)
            assert server.port != taken.getsockname()[1]
            with urllib.request.urlopen(f"{server.api_url}/health", timeout=10) as resp:
                assert resp.status == 200
        finally:
            server.stop()
