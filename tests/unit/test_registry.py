"""The registry on a real MLflow store: the whole predictor as a pyfunc model that loads where
paramaudit is not installed, and a champion replaced only by a model at least as good."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from paramaudit import lineage
from paramaudit.audit import audit_model
from paramaudit.audit_log import log_audit
from paramaudit.config import build_config
from paramaudit.data import load_and_split
from paramaudit.final_model import train_best
from paramaudit.overfit import Reason, Verdict
from paramaudit.registry import comparison_metric, register
from paramaudit.tracking import Tracker

GOOD = {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 32, "num_layers": 1,
        "hidden_size": 32}
BAD = {**GOOD, "learning_rate": 1e-6}
WIDE = {**GOOD, "hidden_size": 64}
OK = Verdict("ok", [])
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
            "artifact_location": str(tmp_path / "art")}


def _run(store: dict[str, Any], hp: dict[str, Any], verdict: Verdict = OK,
         max_rows: int | None = None, **registry: Any) -> dict[str, Any]:
    cfg = build_config({"data": {"dataset": "iris", "max_rows": max_rows}, "tracking": store,
                        "experiment": "reg", "registry": registry})
    splits = load_and_split(cfg)
    final = train_best(splits, "mlp", hp, max_epochs=1 if hp is BAD else 30, patience=30, seed=0)
    tracker = Tracker(cfg.tracking, cfg.experiment)
    parent = tracker.start_run("parent")
    # what publish logs before it registers: the data's tags, the per-layer audit, test metrics
    tracker.set_tags(parent, lineage.data_tags(splits))
    log_audit(tracker, parent, audit_model(final.model))
    tracker.log_metrics(parent, {f"test_{k}": v for k, v in final.test_metrics.items()
                                 if isinstance(v, float)})
    out = register(tracker, parent, cfg, final, verdict, splits, "http://127.0.0.1:5000/#/run")
    tracker.end_run(parent, "FINISHED")
    return {**out, "run": parent, "tracker": tracker}


def _alias(tracker: Tracker, alias: str) -> str:
    return str(tracker.client.get_model_version_by_alias("reg", alias).version)


def test_a_worse_model_stays_challenger_and_a_better_one_takes_the_alias(
        store: dict[str, Any]) -> None:
    first = _run(store, GOOD)
    assert first["promoted"] and first["version"] == "1" and first["reason"].startswith("the first")
    worse = _run(store, BAD)
    tracker = worse["tracker"]
    assert not worse["promoted"] and worse["alias"] == "challenger"
    assert worse["metric"] == comparison_metric("val_loss", "classification") == "log_loss"
    assert worse["challenger_score"] > worse["champion_score"]  # log loss: lower is better
    assert "worse than the champion's (version 1)" in worse["reason"]
    assert (_alias(tracker, "champion"), _alias(tracker, "challenger")) == ("1", "2")
    tags = tracker.client.get_model_version("reg", "2").tags
    assert tags["promotion"] == "challenger" and float(tags["champion_score"]) == pytest.approx(
        worse["champion_score"])
    assert tracker.client.get_run(worse["run"]).data.tags["registry_gate"] == "not promoted"
    described = tracker.client.get_model_version("reg", "2").description
    assert "Data: iris (150 rows" in described and "Promotion: challenger" in described
    assert "labels setosa, versicolor, virginica" in described and worse["run"] in described
    assert "MLflow run: http://127.0.0.1:5000/#/run" in described
    assert "The champion (version 1) on its own test split: accuracy" in described
    assert (tags["data"], tags["data_rows"], tags["task"]) == ("iris", "150", "classification")
    assert tags["labels"] == "setosa, versicolor, virginica" and float(tags["test_accuracy"]) < 0.9
    assert tags["mlflow_run_url"] == "http://127.0.0.1:5000/#/run"
    assert int(tags["params_total"]) == 4 * 32 + 32 + 32 * 3 + 3
    assert "raw rows in" in tracker.client.get_registered_model("reg").description
    # what changed since the champion: the learning rate, the scores; the data did not
    changes = worse["since_champion"]["changes"]
    assert changes["champion_version"] == "1" and not changes["data_hash"]["changed"]
    assert changes["hyperparameters"] == {}  # train_best's hyperparameters are not logged here
    assert changes["columns_added"] == [] == changes["columns_removed"]
    assert changes["labels"] == {"champion": {"setosa": 0.3333, "versicolor": 0.3333,
                                              "virginica": 0.3333},
                                 "this run": changes["labels"]["champion"], "changed": False}
    assert changes["layers"] == []  # the same network, only the learning rate differs
    assert "# Since the champion (version 1" in worse["since_champion"]["markdown"]
    run = tracker.client.get_run(worse["run"]).data
    assert run.tags["since_champion.version"] == "1"
    assert run.tags["since_champion.data_changed"] == "false"
    # the same good configuration again ties the champion: not worse, so it is promoted
    again = _run(store, GOOD)
    assert again["promoted"] and again["challenger_score"] == pytest.approx(again["champion_score"])
    assert _alias(tracker, "champion") == "3"


def test_the_policies_and_the_gate(store: dict[str, Any]) -> None:
    _run(store, GOOD)
    assert _run(store, BAD, promotion="verdict")["promoted"]  # no comparison asked for
    never = _run(store, GOOD, promotion="never")
    assert not never["promoted"] and never["reason"] == "registry.promotion: never"
    overfit = _run(store, GOOD, Verdict("overfit", [Reason("gap", "overfit", "gap", {})]))
    assert not overfit["promoted"] and overfit["reason"] == "overfit"
    tracker = overfit["tracker"]
    assert tracker.client.get_model_version("reg", overfit["version"]).tags["gate"] == (
        "failed: overfit")
    assert _alias(tracker, "champion") == "2"
    # a strictly better model replaces the poor champion under compare; since the champion: a
    # wider hidden layer on the same data (the gate refused nothing, so the champion's columns
    # come from its version's metadata, not from loading it)
    better = _run(store, WIDE)
    assert better["promoted"] and better["challenger_score"] < better["champion_score"]
    assert _alias(tracker, "champion") == better["version"]
    changes = better["since_champion"]["changes"]
    assert not changes["data_rows"]["changed"] and not changes["labels"]["changed"]
    assert changes["columns_added"] == [] == changes["columns_removed"]
    assert {(r["layer"], r["champion"], r["this run"]) for r in changes["layers"]} == {
        ("body.0", 4 * 32 + 32, 4 * 64 + 64), ("head", 32 * 3 + 3, 64 * 3 + 3)}
    md = better["since_champion"]["markdown"]
    assert "| body.0 | Linear | 160 | 320 | +160 |" in md and "- labels: the same" in md


def test_the_label_distribution_and_its_change_in_words() -> None:
    lopsided = lineage.label_distribution("classification", [np.array([0, 0, 0]), np.array([1])],
                                          ["no", "yes"])
    assert lopsided == {"no": 0.75, "yes": 0.25}
    spread = lineage.label_distribution("regression", [np.array([1.0, 3.0])], [])
    assert spread == {"mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0}
    md = lineage.to_markdown({
        "champion_version": "4", "champion_run": "r",
        "data_hash": {"champion": "a" * 64, "this run": "b" * 64, "changed": True},
        "data_rows": {"champion": "8", "this run": "4", "changed": True},
        "labels": {"champion": {"no": 0.5, "yes": 0.5}, "this run": lopsided, "changed": True},
        "hyperparameters": {}, "metrics": {}, "layers": None})
    assert "- labels: no 50.0%, yes 50.0% -> no 75.0%, yes 25.0%" in md
    assert "| layer |" not in md  # no audit to compare: no layer table


def test_the_champion_loads_and_answers_raw_rows_without_paramaudit_installed(
        store: dict[str, Any], tmp_path: Path) -> None:
    import yaml

    client = _run(store, GOOD)["tracker"].client
    model_id = client.get_model_version("reg", "1").source.removeprefix("models:/")
    # the model is code (models-from-code), not a pickled wrapper: nothing to unpickle but the
    # predictor's own artifact
    local = Path(client.get_logged_model(model_id).artifact_location.removeprefix("file://"))
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["model_code_path"].endswith("model_code.py")
    assert not list(local.rglob("python_model.pkl"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # a fresh interpreter with paramaudit's editable install and checkout taken off the path:
    # only the code the model ships can answer
    script = textwrap.dedent(f"""
        import json, sys
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
        sys.path[:] = [p for p in sys.path if p not in ("", {str(Path.cwd())!r})]
        import mlflow.pyfunc, pandas as pd
        mlflow.set_tracking_uri({store["tracking_uri"]!r})
        model = mlflow.pyfunc.load_model("models:/reg@champion")
        import paramaudit
        rows = pd.DataFrame({{"sepal length (cm)": [5.1, 7.7], "sepal width (cm)": [3.5, None],
                              "petal length (cm)": [1.4, 6.7], "petal width (cm)": [0.2, 2.2],
                              "ignored": ["x", "y"]}})
        out = model.predict(rows)
        schema = [c.name for c in model.metadata.get_input_schema().inputs]
        print(json.dumps({{"file": paramaudit.__file__, "labels": out["prediction"].tolist(),
                           "columns": list(out.columns), "schema": schema}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=elsewhere, capture_output=True,
                          text=True, timeout=180, env={"MLFLOW_DISABLE_TELEMETRY": "true",
                                                       "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "/artifacts/code/paramaudit/" in got["file"]  # the shipped copy, not the checkout
    assert got["labels"] == ["setosa", "virginica"]
    assert got["columns"] == ["prediction", "proba_setosa", "proba_versicolor", "proba_virginica"]
    assert got["schema"] == ["sepal length (cm)", "sepal width (cm)", "petal length (cm)",
                             "petal width (cm)"]
