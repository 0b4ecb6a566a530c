"""Resuming a search killed by SIGKILL: nothing rerun, nothing duplicated."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from conftest import cli_env, paramaudit_cmd
from support.runs import child_runs as _children
from support.runs import cli_run as _cli
from support.runs import write_config as _write

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("shared_prefect")]


USER_NET = """
import math

from torch import nn


def build(input_shape, n_outputs, width: int = 16):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.ReLU(),
                         nn.Linear(width, n_outputs))
"""


@pytest.mark.parametrize(("searcher_state", "model"), [("kept", "mlp"), ("lost", "user")])
def test_resume_after_sigkill_reruns_nothing_and_duplicates_nothing(
        tmp_path: Path, searcher_state: str, model: str) -> None:
    """``lost``: Ray Tune's copy of its searcher state on the storage path is gone (what a
    background copy racing a save leaves behind when the process dies right after): the
    resumed search runs the missing trials anew. ``user``: the model is a builder in a file
    of the user's, which the resumed run finds again from the parent run's config."""
    space = {"learning_rate": {"loguniform": [1e-3, 1e-2]}}
    if model == "user":
        (tmp_path / "user_net.py").write_text(USER_NET)
        model, space["width"] = "user_net.py:build", 32
    else:
        space.update(hidden_size=32, num_layers=1)
    _write(tmp_path, {
        "experiment": "resume", "model": model, "data": {"dataset": "digits"},
        "search": {"trials": 6, "scheduler": "none", "max_concurrent": 1, "space": space},
        "train": {"max_epochs": 25, "patience": 3},
    })
    proc = subprocess.Popen(paramaudit_cmd() + ["run", "--config", "cfg.yaml"], cwd=tmp_path,
                            env=cli_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    db = tmp_path / "mlflow.db"
    finished: list = []
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and len(finished) < 2:
            time.sleep(0.5)
            if db.exists():
                try:
                    with sqlite3.connect(db) as con:
                        finished = con.execute(
                            "select r.run_uuid, r.start_time from runs r join tags t on "
                            "t.run_uuid = r.run_uuid where t.key = 'paramaudit.kind' and "
                            "t.value = 'trial' and r.status = 'FINISHED'").fetchall()
                except sqlite3.OperationalError:
                    continue  # MLflow is still creating the store's tables
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
    finally:
        # a crash takes the whole process group down: the driver, Ray and Prefect's server
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert len(finished) >= 2
    with sqlite3.connect(db) as con:
        parent, status = con.execute(
            "select r.run_uuid, r.status from runs r join tags t on t.run_uuid = r.run_uuid "
            "where t.key = 'paramaudit.kind' and t.value = 'pipeline'").fetchone()
    assert status == "RUNNING"  # SIGKILL gave it no chance: this is what --resume is for
    if searcher_state == "lost":
        states = list((tmp_path / ".paramaudit").rglob("basic-variant-state-*.json"))
        assert states, "Tune saved no searcher state"
        for state in states:
            state.unlink()
    done = _cli(tmp_path, "--resume", parent, "--output-json", "out.json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming the search" in done.stdout + done.stderr
    if searcher_state == "lost":
        assert "saved state lost" in done.stdout + done.stderr
    # ("kept" may lose it too: Tune's background copy can race its last save under load, and
    # the top-up then runs the missing trials; what follows holds either way)
    out = json.loads((tmp_path / "out.json").read_text())
    children = _children(tmp_path, parent)
    # a trial running at the kill that Tune's saved state no longer knows is ended KILLED, with
    # its reason, and a new one runs in its place: it never finished, so nothing is rerun
    lost = [c for c in children if c.info.status == "KILLED"]
    assert all("saved state lost it" in c.data.tags["error"] for c in lost)
    children = [c for c in children if c.info.status != "KILLED"]
    assert out["mlflow_run_id"] == parent and out["trials"] == 6 + len(lost)
    if model != "mlp":  # 64 -> 32 -> 10
        assert out["params_total"] == 64 * 32 + 32 + 32 * 10 + 10
    trial_ids = [c.data.tags["trial_id"] for c in children]
    assert len(children) == 6 and len(set(trial_ids)) == 6
    starts = {c.info.run_id: c.info.start_time for c in children}
    for run_id, start in finished:
        assert starts[run_id] == start  # finished before the kill: not rerun
    for child in children:
        assert child.info.status == "FINISHED"
        epochs = int(child.data.metrics["epochs"])
        from mlflow import MlflowClient

        hist = MlflowClient(tracking_uri=f"sqlite:///{db}").get_metric_history(
            child.info.run_id, "val_loss")
        assert sorted(m.step for m in hist) == list(range(1, epochs + 1))  # no duplicated steps
    with sqlite3.connect(db) as con:
        assert con.execute("select status from runs where run_uuid = ?",
                           (parent,)).fetchone()[0] == "FINISHED"
