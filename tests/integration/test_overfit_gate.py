"""Honest overfitting tests: real training, no mocks; the gate and the parameter budget."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import cli_env, paramaudit_cmd

from paramaudit.config import DataConfig, OverfitConfig, PipelineConfig, PreprocessConfig
from paramaudit.data import Dataset, load_and_split, split_and_scale
from paramaudit.final_model import train_best
from paramaudit.overfit import assess

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("shared_prefect")]


def _noisy(n: int = 80, features: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A weak signal in one feature buried in label noise: easy to memorise, hard to learn."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    y = ((x[:, 0] + rng.normal(scale=1.5, size=n)) > 0).astype(np.int64)
    return x, y


def _verdict(splits, hp: dict, max_epochs: int, patience: int):
    final = train_best(splits, "mlp", hp, max_epochs=max_epochs, patience=patience, seed=0)
    n_params = sum(p.numel() for p in final.model.parameters())
    return assess(final.history.curves(), OverfitConfig(), params_trainable=n_params,
                  n_train=len(splits.y_train), test_accuracy=final.test_accuracy,
                  restored_best=True)


def test_a_wide_unregularised_mlp_on_80_noisy_samples_is_overfit() -> None:
    x, y = _noisy()
    ds = Dataset(x, y, [f"f{i}" for i in range(x.shape[1])], ["0", "1"], "noisy", "-")
    splits = split_and_scale(ds, DataConfig(val_size=0.25, test_size=0.25), PreprocessConfig(), 0)
    verdict = _verdict(splits, {"num_layers": 2, "hidden_size": 512, "dropout": 0.0,
                                "weight_decay": 0.0, "optimizer": "adam",
                                "learning_rate": 1e-3, "batch_size": 16}, 100, 10)
    fired = {r.rule: r.severity for r in verdict.reasons}
    assert verdict.verdict == "overfit"
    assert fired["gap"] == "overfit" and fired["capacity"] == "overfit"


def test_a_small_regularised_mlp_on_breast_cancer_is_not_overfit() -> None:
    splits = load_and_split(PipelineConfig(data=DataConfig(dataset="breast_cancer")))
    verdict = _verdict(splits, {"num_layers": 1, "hidden_size": 16, "dropout": 0.2,
                                "weight_decay": 1e-3, "optimizer": "adam",
                                "learning_rate": 1e-3, "batch_size": 32}, 60, 5)
    fired = {r.rule for r in verdict.reasons}
    assert verdict.verdict != "overfit"
    assert not fired & {"gap", "capacity", "divergence"}


def _cli(work: Path, config: dict, *extra: str) -> subprocess.CompletedProcess:
    (work / "cfg.yaml").write_text(yaml.safe_dump(config))
    return subprocess.run(paramaudit_cmd() + ["run", "--config", "cfg.yaml", "--output-json",
                                              "out.json", *extra],
                          cwd=work, env=cli_env(work), capture_output=True, text=True, timeout=600)


def test_the_gate_fails_an_overfit_run_with_exit_3_after_logging(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    x, y = _noisy()
    rows = ["label," + ",".join(f"f{i}" for i in range(x.shape[1]))]
    rows += [f"{t}," + ",".join(f"{v:.5f}" for v in r) for r, t in zip(x, y, strict=True)]
    (tmp_path / "noisy.csv").write_text("\n".join(rows) + "\n")
    proc = _cli(tmp_path, {
        "experiment": "gate", "data": {"path": "noisy.csv", "target": "label",
                                       "val_size": 0.25, "test_size": 0.25},
        "search": {"trials": 1, "scheduler": "none", "space": {
            "num_layers": 2, "hidden_size": 512, "dropout": 0.0, "weight_decay": 0.0,
            "learning_rate": 1e-3, "batch_size": 16, "optimizer": "adam"}},
        "train": {"max_epochs": 60, "patience": 10},
        "audit": {"fail_on_overfit": True},
    })
    assert proc.returncode == 3, proc.stderr[-3000:]
    # Prefect's own log lines share stderr; ours is the one line that starts with paramaudit:
    ours = [ln for ln in proc.stderr.splitlines() if ln.startswith("paramaudit:")]
    assert len(ours) == 1 and ours[0].startswith("paramaudit: overfitting gate: verdict overfit")
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["overfit"]["verdict"] == "overfit"
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(out["mlflow_run_id"])
    assert run.info.status == "FAILED"
    assert run.data.tags["overfit_verdict"] == "overfit"
    (version,) = client.search_model_versions("name = 'gate'")
    assert version.tags["gate"].startswith("failed")
    assert version.aliases == []


def test_the_parameter_budget_skips_large_configurations(tmp_path: Path, run_pipeline) -> None:
    from mlflow import MlflowClient

    out = run_pipeline({
        "experiment": "budget", "data": {"dataset": "digits"},
        "search": {"algorithm": "grid", "trials": 1, "max_params": 5000, "space": {
            "hidden_size": {"choice": [32, 256]}, "num_layers": 1, "learning_rate": 0.01}},
        "train": {"max_epochs": 2, "patience": 2},
    })
    assert out["trials"] == 2 and out["best_hyperparameters"]["hidden_size"] == 32
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = client.get_run(out["mlflow_run_id"])
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{out['mlflow_run_id']}'")
    by_width = {c.data.params["hidden_size"]: c for c in children}
    big, small = by_width["256"], by_width["32"]
    assert big.data.tags["skipped"] == "true"
    assert "max_params 5,000" in big.data.tags["skip_reason"]
    assert big.data.metrics["epochs"] == 0
    assert big.data.metrics["params_trainable"] == 64 * 256 + 256 + 256 * 10 + 10
    assert client.get_metric_history(big.info.run_id, "val_loss") == []
    assert small.data.metrics["epochs"] == 2 and "skipped" not in small.data.tags
    assert parent.data.metrics["trials_skipped"] == 1
    version = client.get_model_version_by_alias("budget", "champion") \
        if out["overfit"]["verdict"] != "overfit" else None
    if version is not None:
        assert version.run_id == out["mlflow_run_id"]
