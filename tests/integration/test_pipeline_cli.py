"""The whole pipeline through the command line, in smoke mode, on real Ray, Prefect and MLflow.

One run is shared by the module's tests; it runs with the network guard refusing anything that
leaves loopback, so Ray's metadata probe or any telemetry would show up here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, cli_env, guard_findings, paramaudit_cmd

pytestmark = pytest.mark.integration

CONTRACT_KEYS = {
    "mlflow_run_id", "experiment", "best_hyperparameters", "test_metrics", "params_total",
    "params_trainable", "overfit", "trials", "prefect_flow_run_id",
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("smoke")
    guard = work / "netguard"
    proc = subprocess.run(
        paramaudit_cmd() + ["run", "--config", str(ROOT / "configs" / "default.yaml"), "--smoke",
                            "--experiment", "smoke-test", "--output-json", "out.json",
                            "--timings", "timings.json"],
        cwd=work, env=cli_env(work, guard), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = json.loads((work / "out.json").read_text())
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    return {"work": work, "proc": proc, "out": out, "client": client, "guard": guard}


def test_output_json_follows_the_contract(smoke: dict) -> None:
    out = smoke["out"]
    assert CONTRACT_KEYS <= set(out)
    assert out["experiment"] == "smoke-test"
    assert out["trials"] == 2
    assert set(out["test_metrics"]) >= {"accuracy", "loss"}
    assert 0.5 < out["test_metrics"]["accuracy"] <= 1.0
    assert out["overfit"]["verdict"] in ("ok", "warn", "overfit")
    assert isinstance(out["overfit"]["reasons"], list)
    assert out["params_trainable"] <= out["params_total"]
    assert out["prefect_flow_run_id"]
    for key in ("learning_rate", "batch_size", "num_layers", "hidden_size", "optimizer"):
        assert key in out["best_hyperparameters"]


def test_the_run_started_and_stopped_its_own_prefect_server(smoke: dict) -> None:
    """No PREFECT_API_URL: the CLI's temporary server served the flow run and is gone after."""
    from support import servers as srv

    assert smoke["out"]["prefect_flow_run_id"]
    assert srv.prefect_servers_with_home(smoke["work"] / "prefect-home") == []
    # the phases bench/ reads, each measured
    timings = json.loads((smoke["work"] / "timings.json").read_text())
    assert "timings" not in smoke["out"]  # a measurement of the machine, not a result
    for key in ("checks", "startup", "ray_start", "imports", "prefect_server_wait",
                "prefect_start", "search", "publish", "ray_stop", "total"):
        assert timings[key] >= 0, key


def test_params_total_matches_the_chosen_architecture(smoke: dict) -> None:
    from paramaudit.models.mlp import MLPConfig

    hp = smoke["out"]["best_hyperparameters"]
    expected = MLPConfig(input_dim=64, n_classes=10, num_layers=hp["num_layers"],
                         hidden_size=hp["hidden_size"]).num_params()
    assert smoke["out"]["params_total"] == expected


def test_parent_run_holds_hyperparameters_metrics_tags_and_artifacts(smoke: dict) -> None:
    client, out = smoke["client"], smoke["out"]
    run = client.get_run(out["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["prefect_flow_run_id"] == out["prefect_flow_run_id"]
    assert run.data.tags["overfit_verdict"] == out["overfit"]["verdict"]
    assert "overfit_reasons" in run.data.tags
    # hyperparameters are params; learned-parameter counts are metrics
    for key, value in out["best_hyperparameters"].items():
        assert run.data.params[key] == str(value)
    assert run.data.metrics["params_total"] == out["params_total"]
    assert run.data.metrics["params_trainable"] == out["params_trainable"]
    assert run.data.metrics["test_accuracy"] == pytest.approx(out["test_metrics"]["accuracy"])
    assert "params_total" not in run.data.params
    paths = {a.path for folder in ("audit", "plots", "report")
             for a in client.list_artifacts(run.info.run_id, folder)}
    assert {"audit/parameter_audit.csv", "audit/parameter_audit.json",
            "plots/learning_curves.png", "report/report.md"} <= paths
    local = Path(client.download_artifacts(run.info.run_id, "audit/parameter_audit.json"))
    audit = json.loads(local.read_text())
    assert sum(layer["params"] for layer in audit["layers"]) == out["params_total"]
    curve = client.get_metric_history(run.info.run_id, "curve_val_loss")
    assert len(curve) >= 1


def test_one_nested_child_run_per_trial(smoke: dict) -> None:
    client, out = smoke["client"], smoke["out"]
    parent = client.get_run(out["mlflow_run_id"])
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{out['mlflow_run_id']}'",
    )
    assert len(children) == out["trials"] == 2
    for child in children:
        assert child.info.status == "FINISHED"
        assert {"learning_rate", "batch_size", "optimizer"} <= set(child.data.params)
        history = client.get_metric_history(child.info.run_id, "val_loss")
        assert len(history) == int(child.data.metrics["epochs"]) >= 1
        assert [m.step for m in history] == list(range(1, len(history) + 1))
        assert child.data.metrics["params_trainable"] > 0
        assert child.data.tags["overfit_verdict"] in ("ok", "warn", "overfit")


def test_the_model_is_logged_and_registered(smoke: dict) -> None:
    client = smoke["client"]
    versions = client.search_model_versions("name = 'smoke-test'")
    assert [v.run_id for v in versions] == [smoke["out"]["mlflow_run_id"]]


def test_progress_and_summary_are_printed(smoke: dict) -> None:
    text = smoke["proc"].stdout + smoke["proc"].stderr
    for step in ("[1/6] preprocess", "[2/6] search", "[3/6] train", "[4/6] audit", "[5/6] publish",
                 "[6/6] gate"):
        assert step in text
    assert "mlflow ui --backend-store-uri" in text
    assert smoke["out"]["mlflow_run_id"] in text


def test_nothing_left_loopback(smoke: dict) -> None:
    assert guard_findings(smoke["guard"]) == []


def test_the_guard_catches_a_non_loopback_attempt(tmp_path: Path) -> None:
    """Proves the guard above could fail: a lookup of a public name is logged and refused."""
    guard = tmp_path / "guard"
    code = ("import socket\n"
            "try:\n    socket.getaddrinfo('metadata.google.internal', 80)\n"
            "except OSError as e:\n    print('refused', e)\n"
            "socket.getaddrinfo('127.0.0.1', 80)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=cli_env(tmp_path, guard),
                          capture_output=True, text=True, timeout=60)
    assert "refused netguard" in proc.stdout.replace(":", "")
    findings = guard_findings(guard)
    assert len(findings) == 1 and "metadata.google.internal" in findings[0]
