"""Unit tests of the trial records: run names, the trials table, a record's best value."""

from __future__ import annotations

import math

import pytest

from paramaudit.search.records import TrialRecord, trial_run_name, trial_table


def test_trial_names_say_what_was_tried() -> None:
    name = trial_run_name(7, {"num_layers": 2, "hidden_size": 64, "optimizer": "adam",
                              "learning_rate": 0.00123})
    assert name == "trial-007 2x64 adam lr=0.0012"


def test_trial_table_and_best() -> None:
    rec = TrialRecord("t1", 1, {"learning_rate": 0.1}, params_trainable=10, status="TERMINATED")
    for v in (0.9, 0.5, 0.7):
        rec.history["val_loss"].append(v)
        rec.history["train_loss"].append(v)
        rec.history["val_accuracy"].append(1 - v)
        rec.history["train_accuracy"].append(1 - v)
    assert rec.best("val_loss", "min") == 0.5
    assert rec.best("val_accuracy", "max") == pytest.approx(0.5)
    empty = TrialRecord("t2", 2, {}, status="ERROR", error="boom")
    assert math.isinf(empty.best("val_loss", "min"))
    rows = trial_table([rec, empty])
    assert rows[0]["hp_learning_rate"] == 0.1 and rows[0]["epochs"] == 3
    assert rows[1]["error"] == "boom" and rows[1]["epochs"] == 0


def test_a_record_written_whole_before_a_kill_has_its_run_ended_on_resume(
        tmp_path, monkeypatch) -> None:
    """Killed between a trial's last record write (its status tag) and the end of its run: the
    resumed search will not run it again, so reading the records ends its run as they say."""
    from paramaudit.config import TrackingConfig
    from paramaudit.search.records import records_from_mlflow
    from paramaudit.tracking import Tracker

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    tracker = Tracker(TrackingConfig(tracking_uri=f"sqlite:///{tmp_path}/m.db",
                                     artifact_location=str(tmp_path / "a")), "resume")
    parent = tracker.start_run("parent")
    runs = {}
    for trial_id, status in (("t1", "TERMINATED"), ("t2", "ERROR"), ("t3", None)):
        tags = {"paramaudit.kind": "trial", "trial_id": trial_id, "trial_number": trial_id[1]}
        runs[trial_id] = tracker.start_run(trial_id, tags=tags, parent_id=parent)
        if status is not None:  # the record's last write; the run is never ended
            tracker.set_tags(runs[trial_id], {"trial_status": status})
    records = records_from_mlflow(tracker, parent)
    status = {t: tracker.client.get_run(r).info.status for t, r in runs.items()}
    assert status == {"t1": "FINISHED", "t2": "FAILED", "t3": "RUNNING"}  # t3: still to run
    assert [records[t].status for t in ("t1", "t2", "t3")] == ["TERMINATED", "ERROR", "RUNNING"]
