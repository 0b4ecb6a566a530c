"""The run's summary: what ``--output-json`` writes and the pipeline flow returns.

Plain JSON data (numbers, strings, lists and dicts): the contract the README's "The run summary"
documents. Built by the publish step (paramaudit.publish) once everything is logged.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from paramaudit.config import PipelineConfig
from paramaudit.final_model import FinalModel
from paramaudit.pipeline import AuditResult
from paramaudit.search import SearchOutcome, trial_row


def jsonable(value: Any) -> Any:
    """``value`` as strict JSON: numpy scalars as Python numbers, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist") and hasattr(value, "ndim"):  # a numpy array or scalar
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_summary(parent_id: str, cfg: PipelineConfig, outcome: SearchOutcome, final: FinalModel,
                result: AuditResult, flow_run_id: str | None) -> dict[str, Any]:
    """The run's summary: what --output-json writes and the flow returns."""
    rep, h = result.report, final.history
    regression = final.task == "regression"
    # accuracy and loss: the training loop's own numbers, as before; then every other metric.
    # A regression's: r2, rmse, mae (original units) and loss (the standardised target's MSE)
    test = ({**jsonable(final.test_metrics), "loss": final.test_loss} if regression else
            {**jsonable(final.test_metrics), "accuracy": final.test_accuracy,
             "loss": final.test_loss})
    return {
        "mlflow_run_id": parent_id,
        "experiment": cfg.experiment,
        "task": final.task,
        "best_hyperparameters": final.hyperparameters,
        "test_metrics": test,
        "baseline": jsonable(final.baseline),
        **({"target_scaler": final.target_scaler.to_dict()} if final.target_scaler is not None
           else {"class_labels": list(final.class_labels)}),
        "params_total": rep.total_params,
        "params_trainable": rep.trainable_params,
        "overfit": result.verdict.to_dict(),
        "trials": len(outcome.records),
        "trial_results": [{**trial_row(t), "hyperparameters": t.hyperparameters}
                          for t in outcome.records],
        "prefect_flow_run_id": flow_run_id,
        "final_model": {"source": final.source, "epochs": len(h.val_loss),
                        "best_epoch": h.best_epoch + 1, "stopped_by": h.stopped_by,
                        # refit: the model the search chose, which the verdict judged
                        **({"selection": {"source": final.selection.source,
                                          "test_metrics": jsonable(final.selection.test_metrics)}}
                           if final.selection is not None else {})},
    }


def importance_rows(ranking: pd.DataFrame) -> list[dict[str, Any]]:
    """The hyperparameter ranking as JSON-ready rows."""
    from paramaudit import importance

    return importance.importance_table(ranking)
