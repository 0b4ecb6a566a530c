"""Audit a model without training it: its own Prefect flow, logged to MLflow."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from prefect import flow
from prefect.runtime import flow_run
from pydantic import Field

from paramaudit.config import TrackingConfig
from paramaudit.tasks import audit as t
from paramaudit.tracking import Tracker
from paramaudit.train_hyperparameters import OPTIMIZERS

# the optimizers paramaudit trains with, as the deployment's parameter schema lists them
Optimizer = Literal[OPTIMIZERS]  # type: ignore[valid-type]


@flow(name="paramaudit-audit", flow_run_name="audit {spec}", log_prints=True)
def audit_model_flow(spec: str = "models:mlp", meta: bool = False,
                     depth: Annotated[int, Field(ge=1)] | None = None,
                     optimizer: Optimizer = "adam",
                     experiment: str = "paramaudit-audits",
                     tracking: TrackingConfig | None = None,
                     history_of: str | None = None) -> dict[str, Any]:
    """Count a model's parameters layer by layer; returns the totals and the MLflow run id.

    ``history_of``: a pipeline experiment whose history (`paramaudit history`: one row per
    run, and the trend plot) is logged with the audit too.
    """
    tracker = Tracker(tracking or TrackingConfig(), experiment)
    rep = t.audit_model(spec, meta, optimizer)                                    # 1. audit
    run_id = t.publish_audit(tracker, spec, meta, rep, depth,                     # 2. publish
                             str(flow_run.id) if flow_run.id else None)
    runs = t.publish_history(tracker, run_id, history_of) if history_of else None  # 3. history
    return {"mlflow_run_id": run_id, "experiment": experiment, "spec": spec,
            "total_params": rep.total_params, "trainable_params": rep.trainable_params,
            "bytes": rep.bytes, "history_runs": runs}
