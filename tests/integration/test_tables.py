"""Tables as users have them, run as a new user would: the plain command line on defaults.

A compressed CSV with a row id, gaps in numbers and text, '?' placeholders, a constant, dates,
free text and a yes/no target; and a lopsided table with no signal, whose model must be called
no better than always answering the majority class and kept from the champion alias.
"""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import cli_env, paramaudit_cmd
from support.tables import messy_frame

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("shared_prefect")]


def test_a_messy_table_runs_on_defaults_and_reports_its_columns(tmp_path: Path) -> None:
    frame = messy_frame(400)
    with gzip.open(tmp_path / "clients.csv.gz", "wt", encoding="utf-8") as fh:
        frame.to_csv(fh, index=False)
    proc = subprocess.run(
        paramaudit_cmd() + ["run", "--data", "clients.csv.gz", "--target", "churn", "--smoke",
                            "--drop", "children", "--output-json", "out.json"],
        cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["task"] == "classification" and out["class_labels"] == ["no", "yes"]
    kinds = {row["column"]: row for row in out["columns"]}
    assert kinds["customer_id"]["kind"] == "identifier" and kinds["customer_id"]["action"] == "dropped"
    assert kinds["country"]["kind"] == "constant"
    assert kinds["children"]["action"] == "dropped"          # --drop
    assert kinds["signup"]["kind"] == "datetime" and "year" in kinds["signup"]["action"]
    assert kinds["notes"]["action"] == "dropped" and "free text" in kinds["notes"]["reason"]
    assert "imputed (median)" in kinds["age"]["action"] and kinds["age"]["missing_share"] > 0.05
    assert kinds["plan"]["kind"] == "categorical" and kinds["region"]["kind"] == "categorical"
    assert out["rows"]["read"] == 400
    assert sum(out["rows"][k] for k in ("train", "val", "test")) == 400
    tm, base = out["test_metrics"], out["baseline"]
    assert {"accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "log_loss"} <= set(tm)
    assert base["predicts"] == "no" and base["balanced_accuracy"] == pytest.approx(0.5)
    assert set(tm["per_class"]) == {"no", "yes"}
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(out["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["baseline_balanced_accuracy"] == pytest.approx(0.5)
    names = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/columns.md", "report/columns.json"} <= names
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/confusion_matrix.png" in plots


def test_a_model_no_better_than_the_majority_is_said_so_and_not_champion(
        tmp_path: Path, run_pipeline) -> None:
    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame(rng.normal(size=(n, 5)), columns=[f"f{i}" for i in range(5)])
    frame["fraud"] = np.where(rng.random(n) < 0.03, "yes", "no")  # 3% positives, no signal
    frame.to_csv(tmp_path / "fraud.csv", index=False)
    out = run_pipeline({
        "experiment": "lopsided",
        "data": {"path": "fraud.csv", "target": "fraud"},
        "search": {"algorithm": "random", "trials": 1, "scheduler": "none",
                   "space": {"learning_rate": 0.01, "hidden_size": 8}},
        "train": {"max_epochs": 3, "patience": 3},
    })
    assert out["test_metrics"]["accuracy"] > 0.9            # what a flattering report would show
    assert out["baseline"]["predicts"] == "no"
    reasons = " ".join(out["overfit"]["reasons"])
    assert "no better than always predicting 'no'" in reasons
    assert out["overfit"]["verdict"] in ("warn", "overfit")
    assert out["registry"]["promoted"] is False and out["registry"]["alias"] == "challenger"


def test_a_regression_runs_with_grid_and_k_fold_in_the_targets_units(
        tmp_path: Path, run_pipeline) -> None:
    """scikit-learn's diabetes data (a numeric target): chosen as a regression by `task: auto`."""
    out = run_pipeline({
        "experiment": "regression",
        "data": {"dataset": "diabetes"},
        "search": {"algorithm": "grid", "trials": 1, "scheduler": "none", "cv_folds": 3,
                   "space": {"learning_rate": 0.01, "hidden_size": 16, "num_layers": 1,
                             "loss": {"choice": ["mse", "huber"]}}},
        "train": {"max_epochs": 8, "patience": 8},
    })
    assert out["task"] == "regression" and "class_labels" not in out
    tm, base = out["test_metrics"], out["baseline"]
    assert {"r2", "rmse", "mae", "loss"} <= set(tm)
    assert "accuracy" not in tm
    assert base["r2"] < 0.05 and tm["r2"] > base["r2"]     # the mean explains nothing
    assert 20 < tm["rmse"] < 120 and 20 < base["rmse"] < 120  # the target's units (25 to 346)
    assert sorted(t["hyperparameters"]["loss"] for t in out["trial_results"]) == ["huber", "mse"]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(out["mlflow_run_id"])
    assert {"test_r2", "test_rmse", "baseline_rmse", "train_rmse", "val_rmse", "train_mae",
            "val_mae"} <= set(run.data.metrics)
    assert "plots/predicted_vs_actual.png" in {
        a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    children = client.search_runs([run.info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{out['mlflow_run_id']}'")
    assert len(children) == 2 and all("cv_val_r2_std" in c.data.metrics for c in children)
    import mlflow.pyfunc
    import pandas as pd
    from sklearn.datasets import load_diabetes

    # the logged model answers raw rows (the data set's own columns) in the target's units
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    raw = load_diabetes(as_frame=True).frame
    pred = model.predict(raw.drop(columns=["target"]).head(50))
    assert list(pred.columns) == ["prediction"] and len(pred) == 50
    assert isinstance(pred, pd.DataFrame)
    assert 25 < float(pred["prediction"].mean()) < 350       # in the target's own units


@pytest.mark.parametrize("algorithm", ["random", "bayes"])
def test_a_regression_under_random_and_bayes_search_with_asha(algorithm: str, run_pipeline) -> None:
    """ASHA stops the worse regressions early on the val R²'s loss; the search picks by val_r2."""
    out = run_pipeline({
        "experiment": f"regression-{algorithm}", "data": {"dataset": "diabetes"},
        "search": {"algorithm": algorithm, "trials": 6, "scheduler": "asha", "grace_period": 1,
                   "reduction_factor": 2, "metric": "val_r2",
                   "space": {"learning_rate": {"loguniform": [1e-4, 3e-2]}, "hidden_size": 16,
                             "num_layers": 1}},
        "train": {"max_epochs": 6, "patience": 6},
    })
    trials = out["trial_results"]
    assert out["task"] == "regression" and len(trials) == 6
    assert all(t["status"] == "TERMINATED" and "best_val_r2" in t for t in trials)
    # ASHA halved the field at each rung: not every trial ran all 6 epochs
    assert min(t["epochs"] for t in trials) < 6 == max(t["epochs"] for t in trials)
    best = max(trials, key=lambda t: t["best_val_r2"])
    assert out["best_hyperparameters"]["learning_rate"] == pytest.approx(
        best["hyperparameters"]["learning_rate"])
    assert out["test_metrics"]["r2"] > out["baseline"]["r2"]
