"""The search through the command line: algorithms, k-fold, model choice, faults.

Resuming a killed search is tests/integration/test_resume.py (its own file, so that pytest's
two workers can run it beside these).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from support.runs import child_runs as _children
from support.runs import cli_run as _cli
from support.runs import write_config as _write

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("shared_prefect")]


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
