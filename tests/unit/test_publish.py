"""Publishing a run: the summary's metrics beside the baseline, MLflow metrics and artifacts, and
a registry that refuses a model no better than always predicting the majority class."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from paramaudit.config import build_config
from paramaudit.final_model import train_best
from paramaudit.overfit import Reason, Verdict
from paramaudit.publish import publish
from paramaudit.registry import promotion_refusal
from paramaudit.search import SearchOutcome, TrialRecord
from paramaudit.tracking import Tracker

HP = {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 64, "num_layers": 1,
      "hidden_size": 8}


class _Splits(SimpleNamespace):
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def lopsided_splits(shift: float, seed: int = 0, **extra: Any) -> _Splits:
    """3% positives; ``shift`` 0 leaves nothing to learn."""
    rng = np.random.default_rng(seed)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = (rng.random(n) < 0.03).astype(np.int64)
        return (rng.normal(size=(n, 4)) + y[:, None] * shift).astype(np.float32), y

    (xt, yt), (xv, yv), (xs, ys) = draw(600), draw(300), draw(300)
    return _Splits(x_train=xt, y_train=yt, x_val=xv, y_val=yv, x_test=xs, y_test=ys,
                   input_shape=(4,), n_classes=2, class_names=["no", "yes"], n_features=4,
                   name="lopsided", **extra)


def outcome_for(hp: dict[str, Any]) -> SearchOutcome:
    rec = TrialRecord("t1", 1, dict(hp), status="TERMINATED", params_trainable=58)
    for m in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
        rec.history[m].append(0.5)
    return SearchOutcome(best_hyperparameters=dict(hp), best_trial_id="t1", best_score=0.5,
                         metric="val_loss", records=[rec], seconds=1.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_publish_puts_the_test_metrics_beside_the_baseline(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from paramaudit.pipeline import audit

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    columns = [{"column": "f0", "kind": "numeric", "rows_missing": np.int64(0)}]
    splits = lopsided_splits(0.0, columns_report=columns, row_counts={"read": 1200, "dropped": 0})
    cfg = build_config({"tracking": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
                                     "artifact_location": str(tmp_path / "art"),
                                     "log_model": False}})
    final = train_best(splits, "mlp", HP, max_epochs=3, patience=3, seed=0)
    outcome = outcome_for(HP)
    result = audit(final, splits, outcome, cfg)
    # nothing to learn: balanced accuracy no better than always answering "no"
    assert result.verdict.no_better_than_baseline is not None
    tracker = Tracker(cfg.tracking, "publish")
    parent = tracker.start_run("parent")
    done = publish(tracker, parent, cfg, splits, outcome, final, result, None)
    s = done.summary
    json.dumps(s, allow_nan=False)
    assert s["task"] == "classification" and s["class_labels"] == ["no", "yes"]
    tm, base = s["test_metrics"], s["baseline"]
    assert tm["accuracy"] == final.test_accuracy and tm["loss"] == final.test_loss
    assert {"balanced_accuracy", "f1_macro", "roc_auc", "log_loss", "per_class",
            "confusion"} <= set(tm)
    assert base["predicts"] == "no" and base["balanced_accuracy"] == pytest.approx(0.5)
    assert set(base) >= {"accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "log_loss"}
    assert s["columns"] == [{"column": "f0", "kind": "numeric", "rows_missing": 0}]
    assert s["rows"] == {"read": 1200, "dropped": 0}
    assert any(r.startswith("no better than always predicting 'no'") for r in s["overfit"]["reasons"])
    # MLflow: scalar metrics of both, the figure, the metrics and columns reports
    run = tracker.client.get_run(parent)
    for name in ("test_balanced_accuracy", "test_f1_macro", "test_log_loss",
                 "baseline_balanced_accuracy", "baseline_accuracy", "val_balanced_accuracy"):
        assert name in run.data.metrics, name
    assert run.data.metrics["baseline_balanced_accuracy"] == pytest.approx(0.5)
    assert run.data.metrics["test_accuracy"] == pytest.approx(final.test_accuracy)
    assert run.data.tags["beats_baseline"] == "false"
    paths = {a.path for folder in ("plots", "report")
             for a in tracker.client.list_artifacts(parent, folder)}
    assert {"plots/confusion_matrix.png", "report/metrics.json", "report/columns.json",
            "report/columns.md"} <= paths
    # the Prefect layer's tables, and the report
    assert [r["true \\ predicted"] for r in done.confusion_rows] == ["no", "yes"]
    assert done.columns_rows == s["columns"]
    assert done.baseline_note.startswith("No better than always predicting 'no'")
    assert "## Test metrics against the majority baseline" in done.report_markdown
    assert "| balanced accuracy |" in done.report_markdown
    tracker.end_run(parent)


def test_summary_without_a_columns_report_has_no_columns_key(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from paramaudit.pipeline import audit

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    splits = lopsided_splits(4.0)  # an easy signal: the model beats the baseline
    cfg = build_config({"tracking": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
                                     "artifact_location": str(tmp_path / "art"),
                                     "log_model": False}})
    final = train_best(splits, "mlp", {**HP, "class_weight": "balanced"}, max_epochs=15,
                       patience=15, seed=0)
    result = audit(final, splits, outcome_for(HP), cfg)
    assert result.verdict.no_better_than_baseline is None
    tracker = Tracker(cfg.tracking, "publish")
    parent = tracker.start_run("parent")
    s = publish(tracker, parent, cfg, splits, outcome_for(HP), final, result, None).summary
    assert "columns" not in s and "rows" not in s
    assert s["test_metrics"]["balanced_accuracy"] > s["baseline"]["balanced_accuracy"] + 0.02
    assert tracker.client.get_run(parent).data.tags["beats_baseline"] == "true"
    tracker.end_run(parent)


# ---------------------------------------------------------------- the registry gate

NO_BETTER = Reason("baseline", "warn", "no better than always predicting 'no' (balanced "
                   "accuracy 0.50 vs baseline 0.50; +0.00 < min_baseline_margin 0.02)", {})


def test_promotion_refusal() -> None:
    assert promotion_refusal(Verdict("ok", []), True) is None
    assert promotion_refusal(Verdict("warn", [Reason("gap", "warn", "gap", {})]), True) is None
    assert promotion_refusal(Verdict("warn", [Reason("gap", "warn", "gap", {})]), False) == (
        "warn (overfit.register_on_warn: false)")
    assert promotion_refusal(Verdict("overfit", [Reason("gap", "overfit", "gap", {})]), True) == (
        "overfit")
    # a warn otherwise registered: not when the model is no better than the baseline
    assert promotion_refusal(Verdict("warn", [NO_BETTER]), True) == NO_BETTER.message
