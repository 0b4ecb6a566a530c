"""What the driver knows of each trial (TrialRecord), read back from MLflow, and the trials table."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
REGRESSION_CURVES = ("train_loss", "train_r2", "val_loss", "val_r2")  # a regression's METRICS
# the other per-epoch scores a trial reports, any of which search.metric may name
# (paramaudit.metrics.SEARCH_METRICS); kept and logged per epoch beside METRICS
SCORES = ("val_balanced_accuracy", "val_f1_macro", "val_roc_auc", "val_log_loss",
          "val_rmse", "val_mae")
TRACKED = (*METRICS, "train_r2", "val_r2", *SCORES)


def curve_metrics(task: str) -> tuple[str, ...]:
    """The learning curves' metrics of a task: loss and accuracy, or loss and R²."""
    return REGRESSION_CURVES if task == "regression" else METRICS


@dataclass
class TrialRecord:
    """What the driver learned of one trial."""

    trial_id: str
    number: int
    hyperparameters: dict[str, Any]
    run_id: str | None = None
    history: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in TRACKED})
    params_trainable: int | None = None
    status: str = "RUNNING"
    error: str | None = None
    stopped_by: str | None = None  # asha, divergence, early_stopping (None: the full budget)
    stop_reason: str | None = None
    skip_reason: str | None = None
    verdict: str | None = None
    # the Tune checkpoint the trial left at its last epoch: its best weights (final_from_state)
    checkpoint: str | None = None
    node_id: str | None = None
    worker_pid: int | None = None  # the Ray worker process that ran the trial
    # the k-fold val scores of the last epoch: accuracy, or R² for a regression
    fold_val_scores: list[float] = field(default_factory=list)
    seconds: float = 0.0
    train_seconds: float = 0.0

    @property
    def task(self) -> str:
        """regression when the trial reported R² curves, else classification."""
        return "regression" if self.history.get("val_r2") else "classification"

    @property
    def score(self) -> str:
        """The score beside the loss: val_accuracy's "accuracy", or "r2"."""
        return "r2" if self.task == "regression" else "accuracy"

    def best(self, metric: str, mode: str) -> float:
        """The best finite value of ``metric`` (``mode``: min or max); inf the wrong way if none."""
        values = [v for v in self.history.get(metric, []) if math.isfinite(v)]
        if not values:
            return math.inf if mode == "min" else -math.inf
        return min(values) if mode == "min" else max(values)

    def final(self, metric: str) -> float:
        """The last epoch's value of ``metric`` (nan before any epoch)."""
        values = self.history.get(metric) or [math.nan]
        return values[-1]

    def to_history(self) -> Any:
        """The trial's curves as a training.History (best epoch: the first lowest val loss)."""
        from paramaudit.training import History

        h = History(**{m: list(self.history[m]) for m in curve_metrics(self.task)},
                    task=self.task)
        h.best_epoch = int(np.argmin(h.val_loss)) if h.val_loss else -1
        h.stopped_by, h.stop_reason = self.stopped_by or "max_epochs", self.stop_reason
        h.stopped_early = self.stopped_by is not None
        return h


def trial_run_name(number: int, hp: Mapping[str, Any]) -> str:
    """A run name that says what the trial tried."""
    bits = [f"trial-{number:03d}"]
    if "model" in hp:
        bits.append(str(hp["model"]))
    if "num_layers" in hp and "hidden_size" in hp:
        bits.append(f"{hp['num_layers']}x{hp['hidden_size']}")
    if "optimizer" in hp:
        bits.append(str(hp["optimizer"]))
    if "learning_rate" in hp:
        bits.append(f"lr={float(hp['learning_rate']):.2g}")
    return " ".join(bits)


DONE = ("TERMINATED", "SKIPPED", "ERROR")  # a trial's statuses once it has ended


def records_from_mlflow(tracker: Any, parent_id: str) -> dict[str, TrialRecord]:
    """Trials an interrupted search already logged, keyed by Tune trial id (for --resume).

    A trial whose record was written whole (its ``trial_status`` tag comes last, after the
    history and the summary) but whose run was still RUNNING when the process died (killed
    between the record's last write and the run's end) has its run ended here, as the record
    says: the resumed search does not run it again, so nothing else would end it.
    """
    records: dict[str, TrialRecord] = {}
    for run in tracker.child_runs(parent_id):
        tags = run.data.tags
        if "trial_id" not in tags:
            continue
        rec = TrialRecord(tags["trial_id"], int(tags.get("trial_number", 0)),
                          _typed_params(run.data.params), run_id=run.info.run_id)
        rec.status = tags.get("trial_status", "RUNNING")
        rec.verdict, rec.stopped_by = tags.get("overfit_verdict"), tags.get("stopped_by")
        rec.skip_reason, rec.error = tags.get("skip_reason"), tags.get("error")
        rec.stop_reason, rec.checkpoint = tags.get("stop_reason"), tags.get("final_state")
        if "params_trainable" in run.data.metrics:
            rec.params_trainable = int(run.data.metrics["params_trainable"])
        if rec.status == "TERMINATED":
            for m in TRACKED:
                hist = tracker.client.get_metric_history(run.info.run_id, m)
                rec.history[m] = [h.value for h in sorted(hist, key=lambda h: h.step)]
        if rec.status in DONE and run.info.status == "RUNNING":
            tracker.end_run(run.info.run_id, "FAILED" if rec.status == "ERROR" else "FINISHED")
        records[rec.trial_id] = rec
    return records


def _typed_params(params: Mapping[str, str]) -> dict[str, Any]:
    import yaml

    return {k: yaml.safe_load(v) for k, v in params.items()}


def trial_row(r: TrialRecord) -> dict[str, Any]:
    """A trial's headline: number, status, parameter count, epochs, best val scores, where."""
    return {"trial": r.number, "status": r.status, "params_trainable": r.params_trainable,
            "best_val_loss": r.best("val_loss", "min"),
            f"best_val_{r.score}": r.best(f"val_{r.score}", "max"),
            "epochs": len(r.history["val_loss"]), "node_id": r.node_id,
            "worker_pid": r.worker_pid}


def trial_table(records: list[TrialRecord]) -> list[dict[str, Any]]:
    """One row per trial for reports: :func:`trial_row` with the hyperparameters (``hp_*``),
    the last value of each curve, the trial's verdict, what stopped it and its error."""
    rows = []
    for r in records:
        row = trial_row(r)
        row.update({f"hp_{k}": v for k, v in r.hyperparameters.items()})
        row.update({f"final_{m}": r.final(m) if r.history[m] else np.nan
                    for m in curve_metrics(r.task)})
        row.update(verdict=r.verdict, stopped_by=r.stopped_by, error=r.error or r.skip_reason)
        rows.append(row)
    return rows
