"""`paramaudit history` on a real MLflow store: one row per finished pipeline run, oldest first."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from paramaudit.app.cli import main
from paramaudit.config import TrackingConfig
from paramaudit.tracking import Tracker


def _pipeline_run(tracker: Tracker, score: float, params: int, verdict: str, gate: str,
                  version: str, status: str = "FINISHED") -> str:
    run = tracker.start_run(f"run {version}", {"paramaudit.kind": "pipeline", "dataset": "iris"})
    tracker.log_params(run, {"learning_rate": 0.01, "setting.data": "iris",
                             "setting.search_algorithm": "random", "setting.trials": 4})
    tracker.log_metrics(run, {"test_accuracy": score, "params_trainable": params})
    tracker.set_tags(run, {"overfit_verdict": verdict, "registry_gate": gate,
                           "registry_version": version, "data_hash": "ab" * 32,
                           "data_rows": "150",
                           "registry_alias": "champion" if gate == "champion" else "challenger"})
    tracker.end_run(run, status)
    return run


def test_history_lists_the_runs_with_their_registry_state(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    tracker = Tracker(TrackingConfig(tracking_uri=uri, artifact_location=str(tmp_path / "a")),
                      "hist")
    first = _pipeline_run(tracker, 0.90, 4099, "ok", "champion", "1")
    _pipeline_run(tracker, 0.60, 17539, "warn", "not promoted", "2")
    _pipeline_run(tracker, 0.10, 9, "ok", "champion", "3", status="FAILED")  # not listed
    third = _pipeline_run(tracker, 0.95, 4099, "ok", "champion", "4")
    assert main(["history", "--experiment", "hist", "--csv", str(tmp_path / "h.csv"),
                 "--plot", str(tmp_path / "h.png")]) == 0
    table = pd.read_csv(tmp_path / "h.csv")
    assert table["test_score"].tolist() == [0.90, 0.60, 0.95]
    # no registered model "hist" holds a champion: every champion is a former one
    assert table["registry"].tolist() == ["v1 (was champion)", "v2 challenger",
                                          "v4 (was champion)"]
    assert table["params_trainable"].tolist() == [4099, 17539, 4099]
    assert table["run"][0] == first and table["rows"][0] == 150
    assert table["best_hyperparameters"][0] == "learning_rate=0.01"
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert first[:8] in printed and "accuracy" in printed and "challenger" in printed
    assert "learning_rate=0.01" in printed  # the hyperparameters are among the printed columns
    # a team that registers under another name: its champion is marked as serving
    client = tracker.client
    client.create_registered_model("team-model")
    client.create_model_version("team-model", str(tmp_path / "a"), run_id=third)
    client.set_registered_model_alias("team-model", "champion", "1")
    assert main(["history", "--experiment", "hist", "--registered-name", "team-model",
                 "--csv", str(tmp_path / "t.csv")]) == 0
    assert pd.read_csv(tmp_path / "t.csv")["registry"].tolist()[-1] == "v4 champion"
    assert main(["history", "--experiment", "no such"]) == 2
    assert "no experiment 'no such'" in capsys.readouterr().err


def test_log_history_on_a_run_and_an_experiment_not_there_yet(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from paramaudit.history import log_history

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(TrackingConfig(tracking_uri=uri, artifact_location=str(tmp_path / "a")),
                      "audits")
    run = tracker.start_run("weekly audit")
    assert log_history(tracker, run, "never ran") is None
    assert tracker.client.get_run(run).data.tags["history"] == "no experiment 'never ran' yet"
    assert tracker.client.list_artifacts(run, "history") == []
    tracker.end_run(run, "FINISHED")
