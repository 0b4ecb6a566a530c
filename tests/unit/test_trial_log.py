"""Unit tests of the trial logger: MLflow writes behind Ray Tune's loop."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from paramaudit.config import build_config
from paramaudit.search.trial_log import TrialLogger
from paramaudit.tracking import Tracker


@pytest.fixture
def logged_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Tracker, str, Any]:
    """A real sqlite tracker, a parent run, and the search's trial logger on it."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    cfg = build_config({"tracking": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
                                     "artifact_location": str(tmp_path / "art")},
                        "search": {"trials": 2}, "train": {"max_epochs": 2}})
    tracker = Tracker(cfg.tracking, "logger")
    parent = tracker.start_run("parent")
    return tracker, parent, TrialLogger(tracker, parent, cfg, 100, lambda _m: None)
def _result(epoch: int) -> dict[str, Any]:
    return {"train_loss": 1.0 / epoch, "train_accuracy": 0.5, "val_loss": 1.1 / epoch,
            "val_accuracy": 0.4, "params_trainable": 10, "train_seconds": 0.01}


def test_trial_logger_writes_each_trial_whole_off_the_callers_thread(
        logged_search: tuple[Tracker, str, Any]) -> None:
    tracker, parent, logger = logged_search
    trial = SimpleNamespace(trial_id="t1", config={"learning_rate": 0.01})
    logger.on_trial_start(0, [], trial)
    for epoch in (1, 2):
        logger.on_trial_result(0, [], trial, _result(epoch))
    logger.on_trial_complete(0, [], trial)
    logger.flush()
    logger.close()
    (run,) = tracker.child_runs(parent)
    assert run.info.status == "FINISHED" and run.data.tags["trial_status"] == "TERMINATED"
    assert run.data.params["learning_rate"] == "0.01"
    history = tracker.client.get_metric_history(run.info.run_id, "val_loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 1.1), (2, 0.55)]
    assert logger.records["t1"].run_id == run.info.run_id


def test_a_failed_write_still_ends_every_open_run_and_is_raised(
        logged_search: tuple[Tracker, str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    tracker, parent, logger = logged_search
    done, running = (SimpleNamespace(trial_id=t, config={"learning_rate": lr})
                     for t, lr in (("t1", 0.01), ("t2", 0.02)))
    logger.on_trial_start(0, [], done)
    logger.on_trial_start(0, [], running)
    logger.on_trial_result(0, [], done, _result(1))

    log_record = tracker.log_record

    def store_full(run_id: str, steps: Any, tags: Any) -> None:
        if steps:  # the trial's record (its history); the tags-only writes after it go through
            raise OSError("No space left on device")
        log_record(run_id, steps, tags)

    monkeypatch.setattr(tracker, "log_record", store_full)  # the store fails on this write
    logger.on_trial_complete(0, [], done)
    with pytest.raises(OSError, match="No space left"):
        logger.close_open("KILLED", "interrupted")
    logger.close()
    runs = {r.data.tags["trial_id"]: r for r in tracker.child_runs(parent)}
    assert runs["t2"].info.status == "KILLED" and runs["t2"].data.tags["error"] == "interrupted"
    assert runs["t1"].info.status == "FAILED"  # finished, but its record never reached MLflow
    assert "record was not written" in runs["t1"].data.tags["error"]


def test_a_trial_that_stopped_itself_is_tagged_with_its_reason_and_weights(
        logged_search: tuple[Tracker, str, Any]) -> None:
    tracker, parent, logger = logged_search
    trial = SimpleNamespace(trial_id="t1", config={"learning_rate": 0.01})
    logger.on_trial_start(0, [], trial)
    logger.on_trial_result(0, [], trial, {**_result(1), "stopped_by": "early_stopping",
                                          "stop_reason": "early stopping: no improvement"})
    logger.on_checkpoint(0, [], trial, SimpleNamespace(path="/somewhere/checkpoint_000000"))
    logger.on_trial_complete(0, [], trial)
    logger.close()
    (run,) = tracker.child_runs(parent)
    assert run.data.tags["stopped_by"] == "early_stopping"
    assert run.data.tags["stop_reason"] == "early stopping: no improvement"
    assert run.data.tags["final_state"] == "/somewhere/checkpoint_000000"
    rec = logger.records["t1"]
    assert rec.checkpoint == "/somewhere/checkpoint_000000"
    h = rec.to_history()
    assert h.stopped_early and h.stopped_by == "early_stopping" and h.best_epoch == 0


def test_a_trial_cut_short_without_a_reason_of_its_own_was_stopped_by_asha(
        logged_search: tuple[Tracker, str, Any]) -> None:
    tracker, parent, logger = logged_search  # max_epochs is 2; this trial reports once
    trial = SimpleNamespace(trial_id="t1", config={"learning_rate": 0.01})
    logger.on_trial_start(0, [], trial)
    logger.on_trial_result(0, [], trial, _result(1))
    logger.on_trial_complete(0, [], trial)
    logger.close()
    (run,) = tracker.child_runs(parent)
    assert run.data.tags["stopped_by"] == "asha" and "final_state" not in run.data.tags
    assert logger.records["t1"].checkpoint is None


def test_the_logger_survives_the_pickling_of_tunes_saved_state(
        logged_search: tuple[Tracker, str, Any]) -> None:
    """Tune pickles its callbacks with the search state; a copy must load (for --resume)."""
    from ray import cloudpickle

    _, _, logger = logged_search
    logger.on_trial_start(0, [], SimpleNamespace(trial_id="t1", config={"learning_rate": 0.01}))
    logger.flush()
    copy = cloudpickle.loads(cloudpickle.dumps(logger))
    logger.close()
    assert isinstance(copy, TrialLogger) and set(copy.records) == {"t1"}
    copy.close()  # a new, empty writer: nothing queued
