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
