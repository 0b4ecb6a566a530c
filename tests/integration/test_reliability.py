"""Faults and safety: SIGTERM mid-search, two pipelines at once, determinism, loopback-only Ray."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import cli_env, paramaudit_cmd
from support import servers as srv

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("shared_prefect")]


def _descendants(root: int) -> set[int]:
    """Every live process below ``root`` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def _statuses(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as con:
        return dict(con.execute(
            "select r.run_uuid, r.status from runs r join tags t on t.run_uuid = r.run_uuid "
            "where t.key = 'paramaudit.kind'").fetchall())


def test_sigterm_mid_search_kills_runs_and_leaves_no_ray_process(tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({
        "data": {"dataset": "digits"},
        "search": {"trials": 8, "scheduler": "none", "space": {
            "learning_rate": {"loguniform": [1e-3, 1e-2]}, "hidden_size": 64}},
        "train": {"max_epochs": 40, "patience": 40},
    }))
    proc = subprocess.Popen(paramaudit_cmd() + ["run", "--config", "cfg.yaml"], cwd=tmp_path,
                            env=cli_env(tmp_path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    db = tmp_path / "mlflow.db"
    ray_pids: set[int] = set()
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            time.sleep(0.5)
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            kids = _descendants(proc.pid)
            ray_pids = {p for p in kids
                        if b"ray" in Path(f"/proc/{p}/cmdline").read_bytes().lower()} \
                if kids else set()
            try:
                runs = _statuses(db) if db.exists() else {}
            except sqlite3.OperationalError:
                runs = {}  # MLflow is still creating the store's tables
            # the parent and a trial's child run exist once Tune started: interrupt mid-search
            if len(runs) >= 2 and len(ray_pids) >= 3:
                break
        assert ray_pids, "the search never started"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "paramaudit: interrupted" in err
    statuses = _statuses(db)
    assert "RUNNING" not in statuses.values()
    assert "KILLED" in statuses.values()
    time.sleep(3)  # Ray's processes get a moment to exit after ray.shutdown()
    leftover = [p for p in ray_pids if srv.pid_alive(p)]
    assert leftover == [], [Path(f"/proc/{p}/cmdline").read_bytes()[:120] for p in leftover]


def test_two_pipelines_at_once_complete_unmixed_and_agree(tmp_path: Path) -> None:
    """Same store, same config and seed, side by side: both finish, own their trials, and (one
    trial at a time, so ASHA sees results in a fixed order) choose the same model."""
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({
        "smoke": True, "data": {"dataset": "wine"}, "search": {"max_concurrent": 1}}))
    procs = [subprocess.Popen(paramaudit_cmd() + ["run", "--config", "cfg.yaml",
                                                  "--output-json", f"out{i}.json"],
                              cwd=tmp_path, env=cli_env(tmp_path), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs[0][-1500:] + errs[1][-1500:]
    outs = [json.loads((tmp_path / f"out{i}.json").read_text()) for i in (0, 1)]
    assert outs[0]["mlflow_run_id"] != outs[1]["mlflow_run_id"]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("paramaudit")
    for out in outs:
        children = client.search_runs(
            [exp.experiment_id], f"tags.`mlflow.parentRunId` = '{out['mlflow_run_id']}'")
        assert len(children) == out["trials"] == 2
        assert client.get_run(out["mlflow_run_id"]).info.status == "FINISHED"
    assert outs[0]["best_hyperparameters"] == outs[1]["best_hyperparameters"]
    assert outs[0]["test_metrics"] == outs[1]["test_metrics"]
    assert outs[0]["params_total"] == outs[1]["params_total"]


def test_an_unwritable_artifact_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({
        "smoke": True, "tracking": {"artifact_location": str(tmp_path / "a_file" / "art")}}))
    proc = subprocess.run(paramaudit_cmd() + ["run", "--config", "cfg.yaml"], cwd=tmp_path,
                          env=cli_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "artifacts folder" in lines[0] and "a_file" in lines[0]


def test_local_ray_listens_on_loopback_only_and_has_no_dashboard() -> None:
    """ShadowRay (CVE-2023-48022): no job API or dashboard, nothing bound beyond loopback."""
    import urllib.request

    from paramaudit.config import RayConfig
    from paramaudit.search import ray_session

    before = srv.listeners()
    with ray_session(RayConfig(num_cpus=1)):
        opened = srv.listeners() - before
        commands = [_cmdline(pid) for pid in _descendants(os.getpid())]
        # the node runs: GCS, raylet, its agents; not the monitors or the dashboard head (the
        # process that would serve the job API and probe cloud metadata addresses)
        assert any("gcs_server" in c for c in commands) and any("raylet" in c for c in commands)
        for unused in ("autoscaler/_private/monitor.py", "log_monitor.py", "dashboard/dashboard.py"):
            assert not [c for c in commands if unused in c], unused
        agents = [c for c in commands if "dashboard/agent.py" in c]
        assert agents and all("--minimal" in c for c in agents), agents
        for host in ("127.0.0.1", "127.0.0.2"):
            with pytest.raises(OSError):
                urllib.request.urlopen(f"http://{host}:8265/api/jobs/", timeout=3)
    assert opened, "Ray opened no listening socket at all?"
    exposed = [(ip, port) for ip, port in opened if not ipaddress.ip_address(ip).is_loopback]
    assert exposed == []
    assert os.environ.get("RAY_ADDRESS") is None


@pytest.fixture
def full_disk(tmp_path: Path):
    """A 32 KiB tmpfs: room for the pre-flight probe, not for the run's artifacts."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs to fill needs root (CI runs as root)")
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_a_clear_error_and_the_run_is_failed(tmp_path: Path,
                                                            full_disk: Path) -> None:
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({
        "smoke": True, "data": {"dataset": "iris"},
        "tracking": {"artifact_location": str(full_disk / "art")}}))
    proc = subprocess.run(paramaudit_cmd() + ["run", "--config", "cfg.yaml"], cwd=tmp_path,
                          env=cli_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    ours = [ln for ln in proc.stderr.splitlines() if ln.startswith("paramaudit:")]
    assert len(ours) == 1 and "no space left on the device" in ours[0], proc.stderr[-2000:]
    statuses = _statuses(tmp_path / "mlflow.db")
    assert "RUNNING" not in statuses.values()
    assert "FAILED" in statuses.values()
