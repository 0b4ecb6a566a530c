"""The champion serves raw rows: `mlflow models serve` over HTTP, and `paramaudit predict`."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import cli_env, paramaudit_cmd
from support import servers as srv

pytestmark = pytest.mark.integration
LABELS = ("bronze", "silver", "gold")


def _table(n: int = 360, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    spend = rng.normal(size=n) * 0.5 + y
    spend[rng.random(n) < 0.1] = np.nan
    region = np.array(["north", "south", "east"], dtype=object)[(y + rng.integers(0, 2, n)) % 3]
    region[rng.random(n) < 0.05] = None
    return pd.DataFrame({"member_id": np.arange(n), "spend": spend, "region": region,
                         "visits": y * 3 + rng.integers(0, 3, n),
                         "tier": np.asarray(LABELS, dtype=object)[y]})


def _rows() -> pd.DataFrame:
    """Raw rows as a caller has them: a gap, a category never seen, an extra column."""
    return pd.DataFrame({"spend": [0.1, None, 2.2], "region": ["north", "atlantis", None],
                         "visits": [0, 4, 8], "note": ["a", "b", "c"]})


def test_the_champion_answers_raw_rows_over_http_and_from_the_command_line(
        tmp_path: Path, run_pipeline) -> None:
    _table().to_csv(tmp_path / "members.csv", index=False)
    out = run_pipeline({
        "experiment": "members", "data": {"path": "members.csv", "target": "tier"},
        "search": {"algorithm": "random", "trials": 1, "scheduler": "none",
                   "space": {"learning_rate": 0.01, "hidden_size": 16}},
        "train": {"max_epochs": 15, "patience": 15},
    })
    reg = out["registry"]
    assert reg["promoted"] and reg["version"] == "1"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = srv.base_env(MLFLOW_TRACKING_URI=tracking)
    port = srv.free_port()
    server = srv.spawn("mlflow models serve",
                       [str(srv.BIN / "mlflow"), "models", "serve", "-m", "models:/members@champion",
                        "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port), "-w", "1"],
                       env, tmp_path / "serve.log", cwd=tmp_path, url=f"http://127.0.0.1:{port}")
    with srv.stopping(server):
        srv.wait_until(lambda: srv.http_ok(f"{server.url}/ping"), server, 120, "answering /ping")
        body = json.dumps({"dataframe_split": json.loads(_rows().to_json(orient="split",
                                                                          index=False))})
        req = urllib.request.Request(f"{server.url}/invocations", data=body.encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=60) as r:
            served = pd.DataFrame(json.loads(r.read())["predictions"])
        pid = server.pid
    assert srv.wait_gone(pid, 30)
    assert list(served.columns) == ["prediction", *(f"proba_{c}" for c in sorted(LABELS))]
    assert set(served["prediction"]) <= set(LABELS) and len(served) == 3
    np.testing.assert_allclose(served.filter(like="proba_").sum(axis=1), 1.0, atol=1e-6)
    # the same answers from `paramaudit predict`, written beside the input rows
    _rows().to_csv(tmp_path / "new.csv", index=False)
    cli = subprocess.run(paramaudit_cmd() + ["predict", "--model", "models:/members@champion",
                                             "--data", "new.csv", "--output", "scored.parquet"],
                         cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True,
                         timeout=180)
    assert cli.returncode == 0, cli.stderr[-2000:]
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    assert list(scored.columns[:4]) == ["spend", "region", "visits", "note"]
    assert scored["prediction"].tolist() == served["prediction"].tolist()
    np.testing.assert_allclose(scored["proba_gold"], served["proba_gold"], rtol=1e-6)
    # a row file without a column the model reads: one line, exit 2, nothing written
    _rows().drop(columns=["region"]).to_csv(tmp_path / "short.csv", index=False)
    bad = subprocess.run(paramaudit_cmd() + ["predict", "--model", out["mlflow_run_id"],
                                             "--data", "short.csv", "--output", "x.csv"],
                         cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True,
                         timeout=180)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "paramaudit: error: data file 'short.csv': missing column 'region' (the model reads 3 "
        "columns: 'spend', 'region', 'visits')"]
    assert not (tmp_path / "x.csv").exists()


def test_a_worse_night_stays_challenger_and_says_what_changed(tmp_path: Path, run_pipeline,
                                                             shared_prefect: str) -> None:
    _table().to_csv(tmp_path / "members.csv", index=False)
    base = {"experiment": "nightly", "data": {"path": "members.csv", "target": "tier"},
            "search": {"algorithm": "random", "trials": 1, "scheduler": "none",
                       "space": {"learning_rate": 0.01, "hidden_size": 16}},
            "train": {"max_epochs": 15, "patience": 15}}
    good = run_pipeline(base)
    worse = run_pipeline({**base, "search": {**base["search"], "space": {
        "learning_rate": 1.0e-5, "hidden_size": 16}}, "train": {"max_epochs": 1, "patience": 1}})
    reg = worse["registry"]
    assert good["registry"]["promoted"] and not reg["promoted"], reg
    assert reg["alias"] == "challenger" and reg["champion_version"] == "1"
    if reg["champion_score"] is not None:  # compared (else the gate refused it first)
        assert reg["challenger_score"] > reg["champion_score"]  # log loss: lower is better
    changes = reg["since_champion"]["changes"]
    assert changes["hyperparameters"]["learning_rate"] == {"champion": "0.01",
                                                           "this run": "1e-05"}
    assert not changes["data_hash"]["changed"] and changes["data_rows"]["this run"] == "360"
    assert changes["metrics"]["test_log_loss"]["delta"] > 0
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert client.get_model_version_by_alias("nightly", "champion").run_id == good["mlflow_run_id"]
    assert "report/since_champion.md" in {
        a.path for a in client.list_artifacts(worse["mlflow_run_id"], "report")}
    assert changes["layers"] == [] and not changes["labels"]["changed"]  # same net, same data
    # the Prefect flow run says it too: the registry's decision and what changed
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: shared_prefect}), \
            get_client(sync_client=True) as prefect:
        arts = {a.key: a.data for a in prefect.read_artifacts(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[worse["prefect_flow_run_id"]])))}
    assert "version 2 of `nightly` is the challenger" in arts["registry"]
    assert "# Since the champion (version 1" in arts["since-the-champion"]
    assert "learning_rate 0.01 -> 1e-05" in arts["since-the-champion"]
    # and the tables of a run on a file: its columns as read, the test split's confusion matrix
    columns = {row["column"] for row in _table_rows(arts["data-columns"])}
    assert columns == set(_table().columns)  # every raw column, the target's included
    confusion = _table_rows(arts["confusion-matrix"])
    assert sum(n for row in confusion for k, n in row.items() if k != "true \\ predicted") == \
        worse["rows"]["test"]


def _table_rows(data: Any) -> list[dict[str, Any]]:
    """A Prefect table artifact's rows (the API returns them as JSON text)."""
    return json.loads(data) if isinstance(data, str) else data
