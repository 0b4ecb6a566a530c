"""The Ray Tune callback, run on the driver, that mirrors each trial into a nested MLflow run.

This module imports Ray Tune (the class is a tune.Callback): the runner imports it when a search
runs, so that importing paramaudit.search stays free of Ray.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune import Callback

from paramaudit.config import PipelineConfig
from paramaudit.overfit import Curves, assess
from paramaudit.search.records import (
    DONE,
    SCORES,
    TRACKED,
    TrialRecord,
    curve_metrics,
    trial_run_name,
)
from paramaudit.search.space import planned_trials
from paramaudit.tracking import WriteBehind, redact_text


class TrialLogger(Callback):
    """Writes every trial of a search to MLflow, as a child run of ``parent_id``.

    A trial's metric histories are written once, when it ends: a trial restarted by --resume
    then never leaves half a history (or a second run) behind in MLflow. The writes run in
    order on a background thread (WriteBehind), so Tune's loop and the trials never wait for
    the store; ``flush`` before reading the records' run ids, ``close`` when the search ends.
    ``existing``: the records of an interrupted search (records_from_mlflow), for --resume.
    """

    def __init__(self, tracker: Any, parent_id: str, cfg: PipelineConfig, n_train: int,
                 say: Callable[[str], None], existing: dict[str, TrialRecord] | None = None,
                 ) -> None:
        self.records: dict[str, TrialRecord] = dict(existing or {})
        self.started: dict[str, float] = {}  # trials Tune started in this process
        self._tracker, self._parent_id, self._cfg = tracker, parent_id, cfg
        self._n_train, self._say = n_train, say
        self._replays: set[str] = set()  # trials logged before a crash, run again by Tune
        self._unwritten: set[str] = set()  # trials whose final record is queued, not yet in MLflow
        self._writer = WriteBehind()
        self._planned = planned_trials(cfg)  # for the progress lines: a grid runs trials x its cells

    def flush(self) -> None:
        """Wait for the queued MLflow writes; raise the first that failed."""
        self._writer.flush()

    def close(self) -> None:
        """Finish the queued writes and stop the writer thread (flush raises errors)."""
        self._writer.close()

    def close_open(self, status: str, reason: str) -> None:
        """End the runs of trials still running (the search was interrupted or failed).

        A write that failed in the queue does not stop this: every run still open, those whose
        final record was lost with it too, is ended; then the first error is raised.
        """
        errors: list[Exception] = []
        try:
            self._writer.flush()
        except Exception as err:
            errors.append(err)
        for rec in self.records.values():
            lost = rec.trial_id in self._unwritten  # finished, but its record's write failed
            if rec.run_id is None or not (rec.status == "RUNNING" or lost):
                continue
            end, why = status, reason
            if lost:
                end = "FAILED"
                why = "its record was not written to MLflow" + (
                    redact_text(f": {errors[0]}")[:1000] if errors else "")
            try:
                self._tracker.set_tags(rec.run_id, {"trial_status": end, "error": why})
                self._tracker.end_run(rec.run_id, end)
            except Exception as err:
                errors.append(err)
                continue
            rec.status = end
            self._unwritten.discard(rec.trial_id)
        if errors:
            raise errors[0]

    # -- Tune's hooks ----------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Open the trial's MLflow run (or reopen an interrupted one's)."""
        self.started[trial.trial_id] = time.monotonic()
        old = self.records.get(trial.trial_id)
        if old is not None and old.status in DONE:
            # finished and logged before a crash that beat Tune's state save: keep that record
            # and its run; the rerun's results are not logged again
            self._replays.add(trial.trial_id)
            return
        if old is not None and old.run_id is not None:
            # an unfinished trial of an interrupted search: same child run, fresh history
            old.history = {m: [] for m in TRACKED}
            old.status = "RUNNING"
            run_id = old.run_id
            self._writer.submit(lambda: self._tracker.client.update_run(run_id, status="RUNNING"))
            return
        hp = dict(trial.config)
        rec = TrialRecord(trial.trial_id, max((r.number for r in self.records.values()),
                                              default=0) + 1, hp)
        self.records[trial.trial_id] = rec

        def open_run() -> None:  # on the writer thread; its later writes queue behind it
            rec.run_id = self._tracker.start_run(
                trial_run_name(rec.number, hp),
                tags={"paramaudit.kind": "trial", "trial_id": trial.trial_id,
                      "trial_number": str(rec.number)},
                parent_id=self._parent_id,
            )
            self._tracker.log_params(rec.run_id, hp)

        self._writer.submit(open_run)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        """Keep an epoch's results on the trial's record (written when the trial ends)."""
        rec = self.records.get(trial.trial_id)
        if rec is None or trial.trial_id in self._replays:
            return
        rec.node_id = result.get("node_id") or rec.node_id
        rec.worker_pid = result.get("pid") or rec.worker_pid  # Tune adds it to every result
        rec.params_trainable = int(result.get("params_trainable", 0)) or rec.params_trainable
        if result.get("skipped"):
            rec.skip_reason = str(result.get("skip_reason"))
            return
        task = "regression" if "val_r2" in result else "classification"
        for m in curve_metrics(task):
            rec.history[m].append(float(result[m]))
        for m in SCORES:
            if m in result:
                rec.history.setdefault(m, []).append(float(result[m]))
        rec.train_seconds = float(result.get("train_seconds", rec.train_seconds))
        if result.get("stopped_by"):  # the trial's own StopRule ended it at this epoch
            rec.stopped_by, rec.stop_reason = result["stopped_by"], result.get("stop_reason")
        score = f"_val_{'r2' if task == 'regression' else 'accuracy'}"
        rec.fold_val_scores = [float(v) for k, v in sorted(result.items())
                               if k.startswith("fold") and k.endswith(score)]

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any,
                      **info: Any) -> None:
        """Note where the trial's best weights are (its last epoch's Tune checkpoint)."""
        rec = self.records.get(trial.trial_id)
        if rec is not None and trial.trial_id not in self._replays:
            rec.checkpoint = str(checkpoint.path)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Write the finished trial's record and end its run."""
        self._finish(trial, "TERMINATED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Write the failed trial's record, with its error, and end its run FAILED."""
        self._finish(trial, "ERROR", trial_error(trial))

    # -- a trial's end ---------------------------------------------------------------------------
    def _finish(self, trial: Any, status: str, error: str | None = None) -> None:
        rec = self.records.get(trial.trial_id)
        if rec is None or trial.trial_id in self._replays:
            return
        rec.seconds = time.monotonic() - self.started.get(trial.trial_id, time.monotonic())
        rec.status, rec.error = status, error
        tags = self._end_tags(rec)
        epochs = len(rec.history["val_loss"])
        logged = [m for m in TRACKED if len(rec.history.get(m, ())) == epochs]
        steps = [({m: rec.history[m][step] for m in logged}, step + 1) for step in range(epochs)]
        summary = _summary(rec)
        end = "FAILED" if error else "FINISHED"

        def close_run() -> None:  # queued after open_run: rec.run_id is set by then
            # the history, the summary, then the tags (see Tracker.log_record)
            self._tracker.log_record(rec.run_id, [*steps, (summary, 0)], tags)
            self._tracker.end_run(rec.run_id, end)
            self._unwritten.discard(trial.trial_id)

        self._unwritten.add(trial.trial_id)
        self._writer.submit(close_run)
        params = f"{rec.params_trainable:,}" if rec.params_trainable else "?"
        self._say(f"  trial {rec.number:>3}/{self._planned}  {params:>9} params  {_outcome(rec)}")

    def _end_tags(self, rec: TrialRecord) -> dict[str, Any]:
        """The ended trial's tags; settles its status (SKIPPED), its stop and its verdict."""
        tags: dict[str, Any] = {"trial_status": rec.status}
        epochs = len(rec.history["val_loss"])
        if rec.skip_reason:
            tags.update(skipped="true", skip_reason=rec.skip_reason)
            rec.status = "SKIPPED"
            tags["trial_status"] = "SKIPPED"
        elif rec.error:
            tags["error"] = rec.error
        elif epochs:
            if rec.stopped_by == "max_epochs":
                rec.stopped_by = None  # it ran its whole budget
            elif rec.stopped_by is None and epochs < self._cfg.train.max_epochs:
                rec.stopped_by = "asha"  # Tune stopped it: ASHA is the only stopper
                rec.stop_reason = f"ASHA stopped it after {epochs} epochs"
            if rec.stopped_by:
                tags.update(stopped_by=rec.stopped_by, stop_reason=rec.stop_reason)
            if rec.checkpoint:
                tags["final_state"] = rec.checkpoint
            verdict = assess(_curves(rec), self._cfg.overfit,
                             params_trainable=rec.params_trainable or 0, n_train=self._n_train,
                             fold_scores=rec.fold_val_scores or None)
            rec.verdict = verdict.verdict
            tags.update(overfit_verdict=verdict.verdict, overfit_reasons=verdict.tag_text())
        return tags


def _curves(rec: TrialRecord) -> Curves:
    """The trial's learning curves, as the overfitting rules read them."""
    h = rec.history
    if rec.task == "regression":
        return Curves(h["train_loss"], h["val_loss"], [], [], train_r2=h["train_r2"],
                      val_r2=h["val_r2"])
    return Curves(h["train_loss"], h["val_loss"], h["train_accuracy"], h["val_accuracy"])


def _summary(rec: TrialRecord) -> dict[str, Any]:
    """The ended trial's summary metrics (step 0 of its MLflow run)."""
    score = rec.score
    summary = {"params_trainable": rec.params_trainable, "epochs": len(rec.history["val_loss"]),
               "best_val_loss": rec.best("val_loss", "min"),
               f"best_val_{score}": rec.best(f"val_{score}", "max"),
               "trial_seconds": rec.seconds}
    if rec.fold_val_scores:
        summary.update({"cv_folds": len(rec.fold_val_scores),
                        f"cv_val_{score}_std": float(np.std(rec.fold_val_scores))})
    return summary


def _outcome(rec: TrialRecord) -> str:
    """How the trial ended, for its progress line."""
    if rec.skip_reason:
        return f"skipped: {rec.skip_reason}"
    if rec.error:
        return f"FAILED: {rec.error.splitlines()[0][:200]}"
    shown = "val_r2" if rec.task == "regression" else "val_acc"
    return (f"{shown} {rec.best(f'val_{rec.score}', 'max'):.4f} "
            f"val_loss {rec.best('val_loss', 'min'):.4f} after {len(rec.history['val_loss'])} epochs"
            + (f" (stopped by {rec.stopped_by})" if rec.stopped_by else ""))


def trial_error(trial: Any) -> str:
    """The one-line cause of a failed trial (the innermost exception), for its MLflow run."""
    import cloudpickle

    err: Any = None
    try:
        # Trial.handle_error writes the error to the trial's local folder before this callback
        # runs (pickled_error_file, error_file: public properties). Trial.get_pickled_error()
        # and Result.error read the copy synced to the storage path, which does not exist yet
        # here, and the ResultGrid comes only after the whole search.
        if trial.pickled_error_file and Path(trial.pickled_error_file).is_file():
            err = cloudpickle.loads(Path(trial.pickled_error_file).read_bytes())
        elif trial.error_file and Path(trial.error_file).is_file():
            err = Path(trial.error_file).read_text()
    except Exception:  # an unreadable error file must not break the search
        err = None
    while err is not None and getattr(err, "cause", None) is not None:
        err = err.cause  # RayTaskError wraps the trainable's own exception
    if err is None:
        text = "trial raised an error"
    elif isinstance(err, str):
        text = err
    else:
        text = f"{type(err).__name__}: {err}"
    text = redact_text(text)  # before it is cut: a cut URI would no longer match
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:1000] if lines else text
