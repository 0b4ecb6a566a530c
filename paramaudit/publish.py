"""Step 5, publish: the parent run's params, metrics, tags and artifacts, the registry, the summary.

``publish`` returns a ``Publication``: the run's summary (the ``--output-json`` contract and the
flow's return value) and, apart from it, the views the Prefect layer turns into artifacts.

The test split's metrics are published beside the majority-class baseline's (paramaudit.metrics):
MLflow metrics ``test_<name>`` and ``baseline_<name>`` (accuracy, balanced_accuracy, f1_macro,
roc_auc, log_loss), ``report/metrics.json``, ``plots/confusion_matrix.png``; a model that does
not beat the baseline (the verdict's ``baseline`` rule) is never made champion. A regression's
are r2, rmse and mae (``test_r2``, ``baseline_r2``, ...; the baseline always predicts the
training mean), with ``plots/predicted_vs_actual.png`` instead of the confusion matrix; its
registered model answers in the target's original units (FinalModel.served_model).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from paramaudit import capacity, lineage, report
from paramaudit.audit_log import audit_metrics, log_audit
from paramaudit.config import PipelineConfig
from paramaudit.data import Splits, columns_report_markdown
from paramaudit.final_model import FinalModel
from paramaudit.metrics import (
    comparison_markdown,
    confusion_markdown,
    confusion_rows,
    plot_confusion,
    plot_predictions,
    scalar_metrics,
)
from paramaudit.overfit import Verdict
from paramaudit.pipeline import STEPS, AuditResult, scored_trials
from paramaudit.progress import say
from paramaudit.registry import register
from paramaudit.runreport import (
    capacity_markdown,
    importance_markdown,
    markdown_summary,
    plot_learning_curves,
)
from paramaudit.runs import run_name
from paramaudit.search import SearchOutcome, trial_table
from paramaudit.summary import importance_rows, jsonable, run_summary
from paramaudit.tracking import Tracker, is_local_store, scratch_dir, without_userinfo


@dataclass
class Publication:
    """What publishing produced: the summary, and the report's views for Prefect's artifacts."""

    summary: dict[str, Any]
    report_markdown: str
    capacity_rows: list[dict[str, Any]] = field(default_factory=list)
    importance_rows: list[dict[str, Any]] = field(default_factory=list)
    confusion_rows: list[dict[str, Any]] = field(default_factory=list)  # of the test split
    columns_rows: list[dict[str, Any]] = field(default_factory=list)  # the data's columns report
    baseline_note: str = ""  # the test metrics against the majority baseline, in a sentence
    since_champion_markdown: str | None = None  # what changed since the champion, where one was


@dataclass
class _Counts:
    total: int
    finished: int
    failed: int
    skipped: int

    @classmethod
    def of(cls, outcome: SearchOutcome) -> _Counts:
        status = [t.status for t in outcome.records]
        return cls(len(status), status.count("TERMINATED"), status.count("ERROR"),
                   status.count("SKIPPED"))


def mlflow_ui_hint(tracker: Tracker, parent_id: str) -> tuple[str, str | None]:
    """The command that opens the MLflow UI on this run, and the run's URL in it."""
    if is_local_store(tracker.uri):
        port = 5000
        cmd = (f"MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --backend-store-uri "
               f"{tracker.uri} --host 127.0.0.1 --port {port}   (or: make ui)")
        base = f"http://127.0.0.1:{port}"
    else:
        # a link a browser can open: the password stays out, the browser asks for it
        base = without_userinfo(tracker.uri).rstrip("/")
        cmd = f"open {base}"
    url = f"{base}/#/experiments/{tracker.experiment_id}/runs/{parent_id}"
    return cmd, url


def publish(tracker: Tracker, parent_id: str, cfg: PipelineConfig, splits: Splits,
            outcome: SearchOutcome, final: FinalModel, result: AuditResult,
            flow_run_id: str | None) -> Publication:
    """Step 5: the parent run's params, metrics, tags and artifacts; the registry gate."""
    counts = _Counts.of(outcome)
    # hyperparameters are MLflow params; learned-parameter counts are metrics
    tracker.log_params(parent_id, final.hyperparameters)
    _log_metrics(tracker, parent_id, splits, outcome, final, result, counts)
    _log_tags(tracker, parent_id, cfg, outcome, final, result)
    # what `paramaudit history` lists and the next run compares: which data, how much, labels
    tracker.set_tags(parent_id, lineage.data_tags(splits))
    chosen = next((str(t.number) for t in outcome.records if t.trial_id == outcome.best_trial_id),
                  None)
    cap_rows = capacity.summary_table(result.capacity_points, chosen)
    onset = capacity.gap_onset(result.capacity_points)
    if onset:
        tracker.set_tags(parent_id, {"capacity_gap_onset": onset["message"]})
    ui_cmd, ui_url = mlflow_ui_hint(tracker, parent_id)
    imp_rows = importance_rows(result.importance) if result.importance is not None else []
    md = _report_markdown(cfg, splits, final, result, counts, parent_id, ui_url, cap_rows,
                          onset, imp_rows)
    columns = jsonable(getattr(splits, "columns_report", None))
    _log_artifacts(tracker, parent_id, outcome, final, result, md, chosen, cap_rows, splits.name,
                   _test_predictions(final, splits))
    _log_data_report(tracker, parent_id, columns)
    registered = None
    if cfg.tracking.log_model:
        registered = register(tracker, parent_id, cfg, final, result.verdict, splits, ui_url)
    say(f"[5/{STEPS}] publish: MLflow run {parent_id} has the hyperparameters, metrics, "
        f"audit and plots")
    summary = run_summary(parent_id, cfg, outcome, final, result, flow_run_id)
    # the markdown is for the Prefect artifact (and report/since_champion.md): the summary keeps
    # the changes as data
    changes = (registered or {}).get("since_champion")
    since_md = changes.pop("markdown", None) if changes else None
    summary.update(registry=registered, registered_model=registered,
                   mlflow_ui={"command": ui_cmd, "url": ui_url})
    if columns is not None:
        summary["columns"] = columns
    if (rows := getattr(splits, "row_counts", None)) is not None:
        summary["rows"] = jsonable(rows)
    # NaN is not JSON: a failed or skipped trial's losses travel as null
    finite_rows = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                    for k, v in row.items()} for row in cap_rows]
    confusion = final.test_metrics.get("confusion")
    return Publication(summary, md, finite_rows, imp_rows,
                       confusion_rows(confusion) if confusion else [], list(columns or []),
                       _baseline_note(final, result.verdict), since_md)


def _test_predictions(final: FinalModel, splits: Splits) -> tuple[Any, Any] | None:
    """A regression's test targets and the final model's predictions (original units)."""
    if final.task != "regression" or final.target_scaler is None:
        return None
    from paramaudit.training import predict_regression

    return splits.y_test, predict_regression(final.model, splits.x_test, final.target_scaler)


def _baseline_note(final: FinalModel, verdict: Verdict) -> str:
    if not (final.test_metrics and final.baseline):
        return ""
    reason = verdict.no_better_than_baseline
    if reason is not None:
        return reason.message[0].upper() + reason.message[1:] + "."
    tm, base = final.test_metrics, final.baseline
    if final.task == "regression":
        return (f"R² {tm['r2']:.4f} (RMSE {tm['rmse']:.4g}) against {base['r2']:.4f} (RMSE "
                f"{base['rmse']:.4g}) for always predicting the training mean "
                f"{base['predicts']:.4g}.")
    return (f"balanced accuracy {tm['balanced_accuracy']:.4f} against {base['balanced_accuracy']:.4f} "
            f"for always predicting {base['predicts']!r} (rows: true class, columns: predicted).")


def _log_data_report(tracker: Tracker, parent_id: str, columns: list[dict[str, Any]] | None,
                     ) -> None:
    """The data's columns report (when the data step made one), as JSON and markdown."""
    if not columns:
        return
    with scratch_dir() as tmp:
        d = Path(tmp)
        (d / "columns.json").write_text(json.dumps(columns, indent=2))
        (d / "columns.md").write_text(columns_report_markdown(columns))
        for name in ("columns.json", "columns.md"):
            tracker.log_file(parent_id, d / name, "report")


def table_markdown(rows: list[dict[str, Any]]) -> str:
    """Rows of dicts as a markdown table, the columns in the order they first appear."""
    keys = list(dict.fromkeys(k for row in rows for k in row))

    def cell(v: Any) -> str:
        return "" if v is None else str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(row.get(k)) for k in keys) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _log_metrics(tracker: Tracker, parent_id: str, splits: Splits, outcome: SearchOutcome,
                 final: FinalModel, result: AuditResult, counts: _Counts) -> None:
    rep, h = result.report, final.history
    best, n_train = h.best_epoch, len(splits.y_train)
    score = "r2" if final.task == "regression" else "accuracy"
    metrics = {
        **({"test_accuracy": final.test_accuracy} if final.test_accuracy is not None else {}),
        "test_loss": final.test_loss,
        **audit_metrics(rep), "params_per_train_sample": rep.trainable_params / n_train,
        "best_epoch": best + 1, "epochs_trained": len(h.val_loss),
        "val_loss": h.val_loss[best], f"val_{score}": h.scores("val")[best],
        "train_loss": h.train_loss[best], f"train_{score}": h.scores("train")[best],
        "search_best_score": outcome.best_score, "trials_total": len(outcome.records),
        "trials_finished": counts.finished, "trials_failed": counts.failed,
        "trials_skipped": counts.skipped, "search_seconds": outcome.seconds, "n_train": n_train,
    }
    # test_accuracy and test_loss above stay the training loop's own numbers
    metrics = {**scalar_metrics(final.test_metrics, "test"),
               **scalar_metrics(final.baseline, "baseline"), **metrics}
    for split, scores in final.split_metrics.items():  # the final model's train and val splits
        metrics.update({f"{split}_{k}": scores[k] for k in ("balanced_accuracy", "f1_macro", "roc_auc",
                                                            "rmse", "mae")
                        if scores.get(k) is not None})
    if result.pca:
        metrics.update(first_layer_params=result.pca["params_with_pca"],
                       first_layer_params_without_pca=result.pca["params_without_pca"])
        tracker.set_tags(parent_id, {"pca_effect": result.pca["message"]})
    tracker.log_metrics(parent_id, metrics)
    for epoch in range(len(h.val_loss)):
        tracker.log_metrics(parent_id, {
            "curve_train_loss": h.train_loss[epoch], "curve_val_loss": h.val_loss[epoch],
            f"curve_train_{score}": h.scores("train")[epoch],
            f"curve_val_{score}": h.scores("val")[epoch]}, step=epoch + 1)


def _log_tags(tracker: Tracker, parent_id: str, cfg: PipelineConfig, outcome: SearchOutcome,
              final: FinalModel, result: AuditResult) -> None:
    verdict, rep = result.verdict, result.report
    tm, base = final.test_metrics, final.baseline
    if final.task == "regression":
        vs_baseline = (f" (RMSE {tm['rmse']:.4g}; always the training mean {base['predicts']:.4g}"
                       f" scores R² {base['r2']:.4f}, RMSE {base['rmse']:.4g})" if tm and base else "")
        headline = f"test R² {final.test_score:.4f}"
    else:
        vs_baseline = (f" (balanced accuracy {tm['balanced_accuracy']:.4f}, always "
                       f"{base['predicts']!r} scores {base['balanced_accuracy']:.4f})"
                       if tm and base else "")
        headline = f"test accuracy {final.test_score:.4f}"
    baseline_tags = {"beats_baseline": str(verdict.no_better_than_baseline is None).lower()} \
        if tm and base else {}
    tracker.set_tags(parent_id, {
        "overfit_verdict": verdict.verdict, "overfit_reasons": verdict.tag_text(),
        "best_trial_id": outcome.best_trial_id,
        "final_model_source": final.source, **baseline_tags,
        # the run's description in the MLflow UI
        "mlflow.note.content": (
            f"Overfitting verdict **{verdict.verdict}**; {headline}"
            f"{vs_baseline}; {rep.trainable_params:,} trainable parameters; "
            f"{len(outcome.records)} trials ({cfg.search.algorithm} search). "
            + ("; ".join(verdict.to_dict()["reasons"]) or "No overfitting rule fired.")),
    })


def _report_markdown(cfg: PipelineConfig, splits: Splits, final: FinalModel, result: AuditResult,
                     counts: _Counts, parent_id: str, ui_url: str | None,
                     cap_rows: list[dict[str, Any]], onset: dict[str, Any] | None,
                     imp_rows: list[dict[str, Any]]) -> str:
    rep = result.report
    encoded = (getattr(splits, "encoding", None) or {}).get("encoded_columns")
    return markdown_summary(
        title=f"paramaudit: {run_name(cfg)}",
        data={"data set": splits.name, **splits.sizes(), "features": splits.n_features,
              **({"task": "regression"} if final.task == "regression"
                 else {"classes": splits.n_classes}),
              **({"encoded categorical columns": encoded} if encoded else {}),
              **preprocessing_summary(final.preprocessing)},
        hyperparameters=final.hyperparameters, sampled=cfg.search.sampled(),
        test_metrics=_headline_metrics(final),
        params={"params_total": rep.total_params, "params_trainable": rep.trainable_params,
                **({"pca": result.pca["message"]} if result.pca else {})},
        verdict=result.verdict.to_dict(),
        trial_counts={"total": counts.total, "finished": counts.finished,
                      "failed": counts.failed, "skipped": counts.skipped},
        mlflow_run_id=parent_id, mlflow_link=ui_url, audit_markdown=report.render(rep, "markdown"),
        capacity_markdown=capacity_markdown(cap_rows, onset),
        importance_markdown=importance_markdown(imp_rows, result.importance_note),
        metrics_markdown=_metrics_markdown(final),
    )


def preprocessing_summary(described: dict[str, Any]) -> dict[str, Any]:
    """The fitted preprocessing in words a reader of the report knows."""
    names = {"scaler": "scaler (fitted on train)", "pca_components": "PCA components",
             "explained_variance": "variance kept by PCA", "n_in": "features in",
             "n_out": "inputs to the model"}
    return {label: described[key] for key, label in names.items()
            if described.get(key) is not None}


def _headline_metrics(final: FinalModel) -> dict[str, Any]:
    """The test split's headline numbers: accuracy and loss, or a regression's R², RMSE, MAE
    and loss."""
    if final.task == "regression":
        tm = final.test_metrics
        return {"r2": tm["r2"], "rmse": tm["rmse"], "mae": tm["mae"], "loss": final.test_loss}
    return {"accuracy": final.test_accuracy, "loss": final.test_loss}


def _metrics_markdown(final: FinalModel) -> str:
    """The test metrics beside the majority baseline's, then the confusion matrix."""
    if not (final.test_metrics and final.baseline):
        return ""
    parts = [comparison_markdown(final.test_metrics, final.baseline)]
    if final.test_metrics.get("confusion"):
        parts += ["", "Confusion matrix of the test split (rows: true class, columns: predicted):",
                  "", confusion_markdown(final.test_metrics["confusion"])]
    return "\n".join(parts)


def _log_artifacts(tracker: Tracker, parent_id: str, outcome: SearchOutcome, final: FinalModel,
                   result: AuditResult, md: str, chosen: str | None,
                   cap_rows: list[dict[str, Any]], data_name: str,
                   predictions: tuple[Any, Any] | None = None) -> None:
    """report/, plots/, model_weights/ and audit/ on the parent run; ``predictions`` (a
    regression's test targets and predictions) make the predicted-vs-actual plot."""
    h, verdict = final.history, result.verdict
    with scratch_dir() as tmp:
        d = Path(tmp)
        log_audit(tracker, parent_id, result.report)
        (d / "report.md").write_text(md)
        (d / "overfit_verdict.json").write_text(json.dumps(
            {"verdict": verdict.verdict, "reasons": verdict.details()}, indent=2))
        pd.DataFrame(trial_table(outcome.records)).to_csv(d / "trials.csv", index=False)
        (d / "history.json").write_text(json.dumps(h.to_dict(), indent=2))
        # the learned parameters alone, loadable without unpickling code (safetensors)
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous() for k, v in final.model.state_dict().items()},
                  str(d / "weights.safetensors"))
        tracker.log_file(parent_id, d / "weights.safetensors", "model_weights")
        plot_learning_curves(h, d / "learning_curves.png",
                             title=f"Final model on {data_name}: learning curves")
        if final.test_metrics.get("confusion"):
            plot_confusion(final.test_metrics["confusion"], d / "confusion_matrix.png",
                           title=f"Final model on {data_name}: confusion matrix (test split)")
        if final.task == "regression" and predictions is not None:
            plot_predictions(*predictions, d / "predicted_vs_actual.png",
                             title=f"Final model on {data_name}: predicted vs actual (test split)")
        if final.test_metrics:
            (d / "metrics.json").write_text(json.dumps(
                {"task": final.task, "test": jsonable(final.test_metrics),
                 "baseline": jsonable(final.baseline), **jsonable(final.split_metrics),
                 **({"target_scaler": final.target_scaler.to_dict()}
                    if final.target_scaler is not None else {})}, indent=2))
        if result.importance is not None:
            _importance_artifacts(tracker, parent_id, outcome, result, d)
        if result.capacity_points:
            capacity.plot_capacity(result.capacity_points, chosen, d / "capacity.png")
            pd.DataFrame(cap_rows).to_csv(d / "capacity.csv", index=False)
        for p in sorted(d.glob("*.png")):
            tracker.log_file(parent_id, p, "plots")
        for name in ("report.md", "overfit_verdict.json", "trials.csv", "history.json",
                     "capacity.csv", "metrics.json"):
            if (d / name).exists():
                tracker.log_file(parent_id, d / name, "report")


def _importance_artifacts(tracker: Tracker, parent_id: str, outcome: SearchOutcome,
                          result: AuditResult, d: Path) -> None:
    from paramaudit import importance

    assert result.importance is not None
    result.importance.to_csv(d / "hyperparameter_importance.csv", index=False)
    try:
        trials_df = scored_trials(outcome, result.importance["hyperparameter"])
        importance.plot_importance(trials_df, result.importance,
                                   d / "hyperparameter_importance.png", score="val_score")
    except ValueError as err:
        say(f"  importance plot skipped: {err}")
    tracker.log_file(parent_id, d / "hyperparameter_importance.csv", "report")
