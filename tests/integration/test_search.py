"""The search through the command line: algorithms, k-fold, model choice, faults, resume."""

from __future__ import annotations

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

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("shared_prefect")]


def _write(work: Path, config: dict) -> None:
    (work / "cfg.yaml").write_text(yaml.safe_dump(config))


def _cli(work: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(paramaudit_cmd() + ["run", *args], cwd=work, env=cli_env(work),
                          capture_output=True, text=True, timeout=timeout)


def _children(work: Path, parent: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    run = client.get_run(parent)
    return client.search_runs([run.info.experiment_id],
                              f"tags.`mlflow.parentRunId` = '{parent}'", max_results=1000)


def test_bayes_search_over_models_with_k_fold(tmp_path: Path, run_pipeline) -> None:
    out = run_pipeline({
        "experiment": "kfold", "model": {"choice": ["mlp", "cnn"]},
        "data": {"dataset": "digits", "max_rows": 300},
        "search": {"algorithm": "bayes", "trials": 3, "cv_folds": 3, "scheduler": "none",
                   "space": {"learning_rate": {"loguniform": [1e-3, 3e-2]},
                             "hidden_size": {"choice": [32, 64]}, "channels": 4}},
        "train": {"max_epochs": 2, "patience": 2},
    })
    children = _children(tmp_path, out["mlflow_run_id"])
    assert len(children) == 3
    for child in children:
        assert child.data.params["model"] in ("mlp", "cnn")
        assert child.data.metrics["cv_folds"] == 3
        assert 0 <= child.data.metrics["cv_val_accuracy_std"] < 0.5
    assert out["best_hyperparameters"]["model"] in ("mlp", "cnn")
    # k-fold trials trained on folds: the chosen configuration retrained, then refit on train + val
    assert out["final_model"]["selection"]["source"] == "retrained"
    assert out["final_model"]["source"].startswith("refit on train + val, ")


def test_a_failing_trial_is_marked_failed_and_the_search_goes_on(tmp_path: Path) -> None:
    _write(tmp_path, {
        "experiment": "faults", "data": {"dataset": "iris"},
        "search": {"algorithm": "grid", "trials": 1, "scheduler": "none", "space": {
            "learning_rate": {"choice": [0.05, 1.0e12]}, "optimizer": "sgd",
            "hidden_size": 16, "num_layers": 1}},
        "train": {"max_epochs": 3, "patience": 3},
    })
    proc = _cli(tmp_path, "--config", "cfg.yaml", "--output-json", "out.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["best_hyperparameters"]["learning_rate"] == 0.05
    by_lr = {float(c.data.params["learning_rate"]): c for c in _children(tmp_path,
                                                                            out["mlflow_run_id"])}
    bad = by_lr[1.0e12]
    assert bad.info.status == "FAILED"
    assert "loss became" in bad.data.tags["error"]
    assert by_lr[0.05].info.status == "FINISHED"
    statuses = {t["status"] for t in out["trial_results"]}
    assert statuses == {"ERROR", "TERMINATED"}
    # the grid's two cells, counted as such in the progress lines
    said = proc.stdout + proc.stderr  # progress goes through Prefect's logger (log_prints)
    assert "/2 " in said and "/1 " not in said
    # the best trial ran its whole budget and saved its best weights: they are the chosen model,
    # not retrained, and it is refit on train + val for its best epoch count
    (best,) = [t for t in out["trial_results"] if t["status"] == "TERMINATED"]
    final = out["final_model"]
    assert final["selection"]["source"] == f"trial {best['trial']}"
    assert final["selection"]["test_metrics"]["accuracy"] > 0
    assert {k: final[k] for k in ("source", "epochs", "stopped_by")} == {
        "source": f"refit on train + val, {final['best_epoch']} epochs", "epochs": 3,
        "stopped_by": "max_epochs"}
    assert by_lr[0.05].data.tags["final_state"]
    assert "own weights, as retraining it would give" in said


def test_no_finished_trial_fails_the_pipeline_with_a_clear_message(tmp_path: Path) -> None:
    _write(tmp_path, {
        "experiment": "allfail", "data": {"dataset": "iris"},
        "search": {"trials": 1, "scheduler": "none", "space": {
            "learning_rate": 1.0e12, "optimizer": "sgd", "hidden_size": 16}},
        "train": {"max_epochs": 2, "patience": 2},
    })
    proc = _cli(tmp_path, "--config", "cfg.yaml")
    assert proc.returncode == 1
    ours = [ln for ln in proc.stderr.splitlines() if ln.startswith("paramaudit:")]
    assert len(ours) == 1 and "no trial of 1 finished" in ours[0]
    db = sqlite3.connect(tmp_path / "mlflow.db")
    statuses = {row[0] for row in db.execute("select status from runs")}
    assert "RUNNING" not in statuses and "FAILED" in statuses


@pytest.mark.parametrize("searcher_state", ["kept", "lost"])
def test_resume_after_sigkill_reruns_nothing_and_duplicates_nothing(
        tmp_path: Path, searcher_state: str) -> None:
    """``lost``: Ray Tune's copy of its searcher state on the storage path is gone (what a
    background copy racing a save leaves behind when the process dies right after): the
    resumed search runs the missing trials anew."""
    _write(tmp_path, {
        "experiment": "resume", "data": {"dataset": "digits"},
        "search": {"trials": 6, "scheduler": "none", "max_concurrent": 1, "space": {
            "learning_rate": {"loguniform": [1e-3, 1e-2]}, "hidden_size": 32, "num_layers": 1}},
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
    assert out["mlflow_run_id"] == parent and out["trials"] == 6
    children = _children(tmp_path, parent)
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
