"""Preprocessing as hyperparameters, end to end: one-hot, a searched scaler, PCA, importance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("shared_prefect")]


def test_searched_scaler_with_pca_and_one_hot_columns(tmp_path: Path, run_pipeline) -> None:
    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=(n, 6))
    colour = rng.choice(["red", "green", "blue"], size=n)
    y = ((x[:, 0] + (colour == "red") * 1.5) > 0.5).astype(int)
    lines = ["f0,f1,f2,f3,f4,f5,colour,label"] + [
        ",".join(f"{v:.4f}" for v in row) + f",{c},{t}" for row, c, t in zip(x, colour, y,
                                                                           strict=True)]
    (tmp_path / "mixed.csv").write_text("\n".join(lines) + "\n")
    out = run_pipeline({
        "experiment": "prep",
        "data": {"path": "mixed.csv", "target": "label", "categorical": "onehot"},
        "preprocess": {"scaler": {"choice": ["standard", "minmax", "robust"]},
                       "pca_components": 5},
        "search": {"algorithm": "grid", "trials": 1, "scheduler": "none",
                   "space": {"learning_rate": 0.01, "hidden_size": 16, "num_layers": 1}},
        "train": {"max_epochs": 3, "patience": 3},
    })
    assert out["best_hyperparameters"]["scaler"] in ("standard", "minmax", "robust")
    # 6 numeric + 3 one-hot columns in, 5 principal components to the first layer
    assert out["params_total"] == 5 * 16 + 16 + 16 * 2 + 2
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(out["mlflow_run_id"])
    children = client.search_runs([run.info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{out['mlflow_run_id']}'")
    assert sorted(c.data.params["scaler"] for c in children) == ["minmax", "robust", "standard"]
    assert run.data.metrics["first_layer_params"] == 5 * 16 + 16
    assert run.data.metrics["first_layer_params_without_pca"] == 9 * 16 + 16
    assert "PCA keeps 5 of 9 inputs" in run.data.tags["pca_effect"]
    report = Path(client.download_artifacts(run.info.run_id, "report/report.md",
                                            str(tmp_path))).read_text()
    assert "encoded categorical columns: 3" in report
    assert "## Which hyperparameters mattered" in report
    names = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert "report/hyperparameter_importance.csv" in names
