"""A user's own network, from a file outside the project, through the whole pipeline."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import cli_env, paramaudit_cmd
from support.runs import child_runs

pytestmark = pytest.mark.integration

RESMLP = '''
"""A small residual MLP: width, depth and normalisation are its hyperparameters."""
import math
from typing import Literal

import torch
from torch import nn


class ResidualMLP(nn.Module):
    def __init__(self, input_shape, n_outputs, width: int = 32, depth: int = 2,
                 norm: Literal["layer", "batch", "none"] = "layer", dropout: float = 0.1):
        super().__init__()
        norms = {"layer": nn.LayerNorm, "batch": nn.BatchNorm1d, "none": lambda w: nn.Identity()}
        self.inp = nn.Linear(math.prod(input_shape), width)
        self.norms = nn.ModuleList(norms[norm](width) for _ in range(depth))
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x):
        h = self.inp(x.flatten(1))
        for norm, block in zip(self.norms, self.blocks):
            h = h + self.drop(torch.relu(block(norm(h))))
        return self.head(h)
'''


def test_a_users_model_is_tuned_audited_registered_and_served_elsewhere(
        tmp_path: Path, shared_prefect: str) -> None:
    user = tmp_path / "user"
    user.mkdir()
    (user / "resmlp.py").write_text(RESMLP)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    table = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    table["label"] = np.where(x[:, 0] + x[:, 1] > 0, "yes", "no")
    table.to_csv(user / "rows.csv", index=False)
    (user / "config.yaml").write_text(textwrap.dedent("""
        model: resmlp.py:ResidualMLP
        data: {path: rows.csv, target: label}
        search:
          algorithm: grid
          trials: 1
          scheduler: none
          space: {width: {choice: [8, 16]}, norm: {choice: [layer, none]}, learning_rate: 0.01}
        train: {max_epochs: 3, patience: 3}
        tracking: {registered_model_name: resmlp}
    """))
    run = subprocess.run(paramaudit_cmd() + ["run", "--config", "config.yaml", "--output-json",
                                             "out.json"], cwd=user, env=cli_env(user),
                         capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads((user / "out.json").read_text())
    assert out["trials"] == 4  # 2 widths x 2 norms; the default space's MLP widths left out
    best = out["best_hyperparameters"]
    assert best["width"] in (8, 16) and best["norm"] in ("layer", "none") and "hidden_size" not in best

    from mlflow import MlflowClient

    tracking = f"sqlite:///{user / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=tracking)
    parent = client.get_run(out["mlflow_run_id"])
    assert parent.data.params["setting.model"] == f"{user / 'resmlp.py'}:ResidualMLP"
    assert parent.data.params["width"] == str(best["width"])
    audit = pd.read_csv(client.download_artifacts(out["mlflow_run_id"], "audit/parameter_audit.csv",
                                                  str(tmp_path)))
    width = best["width"]
    norm = 2 * width if best["norm"] == "layer" else 0
    expected = 4 * width + width + 2 * (width * width + width + norm) + 2 * width + 2
    assert audit["params"].sum() == out["params_total"] == expected
    assert {"inp", "blocks.0", "blocks.1", "head"} <= set(audit["name"])

    # the registered model ships the user's file: it loads with the file gone, elsewhere
    shutil.move(user / "resmlp.py", tmp_path / "moved.py")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = textwrap.dedent(f"""
        import sys
        assert not any("paramaudit" in p for p in sys.path), sys.path
        import mlflow, pandas as pd
        mlflow.set_tracking_uri({tracking!r})
        model = mlflow.pyfunc.load_model("models:/resmlp@champion")
        rows = pd.read_csv({str(user / 'rows.csv')!r}).drop(columns=["label"]).head(20)
        print(model.predict(rows).to_json())
    """)
    env = {k: v for k, v in cli_env(elsewhere).items() if k != "PYTHONPATH"}
    loaded = subprocess.run([sys.executable, "-I", "-c", code], cwd=elsewhere, env=env,
                            capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    answers = pd.DataFrame(json.loads(loaded.stdout.strip().splitlines()[-1]))
    assert set(answers["prediction"]) <= {"yes", "no"}
    assert (answers["prediction"] == table["label"].head(20).to_numpy()).mean() >= 0.7
    scored = subprocess.run(paramaudit_cmd() + ["predict", "--model", "models:/resmlp@champion",
                                                "--data", str(user / "rows.csv"), "--output",
                                                "scored.csv"],
                            cwd=elsewhere, env=cli_env(elsewhere, MLFLOW_TRACKING_URI=tracking),
                            capture_output=True, text=True, timeout=300)
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert pd.read_csv(elsewhere / "scored.csv")["prediction"].head(20).tolist() == \
        answers["prediction"].tolist()


def test_a_users_model_under_bayes_asha_k_fold_and_the_parameter_budget(
        tmp_path: Path, run_pipeline) -> None:
    (tmp_path / "resmlp.py").write_text(RESMLP)  # run_pipeline works in tmp_path
    rng = np.random.default_rng(1)
    x = rng.normal(size=(240, 3))
    table = pd.DataFrame(x, columns=["a", "b", "c"])
    table["y"] = np.where(x[:, 0] - x[:, 2] > 0, "up", "down")
    table.to_csv(tmp_path / "rows.csv", index=False)
    out = run_pipeline({
        "experiment": "user-bayes", "model": "resmlp.py:ResidualMLP",
        "data": {"path": "rows.csv", "target": "y"},
        "search": {"algorithm": "bayes", "trials": 8, "cv_folds": 2, "scheduler": "asha",
                   "grace_period": 1, "max_params": 5_000,
                   "space": {"width": {"choice": [8, 256]}, "depth": {"randint": [1, 3]},
                             "norm": {"choice": ["layer", "batch"]},
                             "learning_rate": {"loguniform": [3e-3, 3e-2]}}},
        "train": {"max_epochs": 3, "patience": 3},
    })
    trials = out["trial_results"]
    assert len(trials) == 8
    # width 256 is over 5,000 parameters at any depth: such a trial is counted, never trained
    for t in trials:
        assert (t["hyperparameters"]["width"] == 256) == (t["params_trainable"] > 5_000)
    best = out["best_hyperparameters"]
    assert best["width"] == 8 and best["depth"] in (1, 2) and best["norm"] in ("layer", "batch")
    trained = [c for c in child_runs(tmp_path, out["mlflow_run_id"])
               if c.data.params.get("width") == "8"]
    assert trained and all(c.data.metrics["cv_folds"] == 2 for c in trained)
    assert out["final_model"]["selection"]["source"] == "retrained"  # k-fold: no single trial
    width, depth = 8, best["depth"]
    assert out["params_total"] == 3 * width + width + depth * (width * width + 3 * width) + \
        2 * width + 2
