"""The paramaudit pipeline as a Prefect flow: a numbered recipe that returns the run's summary."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from paramaudit import pipeline as steps
from paramaudit import runs
from paramaudit.config import PipelineConfig
from paramaudit.errors import OverfitGateError
from paramaudit.progress import LAST_FLOW_TIMINGS, Timer
from paramaudit.tasks import pipeline as t
from paramaudit.tracking import check_reachable, resolve_tracking_uri


def _run_name() -> str:
    cfg = flow_run.parameters.get("config")
    if isinstance(cfg, PipelineConfig):
        return runs.run_name(cfg.effective())
    return runs.run_name(PipelineConfig.model_validate(cfg or {}).effective())


@flow(name="paramaudit-pipeline", flow_run_name=_run_name, log_prints=True,
      validate_parameters=True)
def paramaudit_pipeline(config: PipelineConfig | None = None,
                        resume_run_id: str | None = None) -> dict[str, Any]:
    """Preprocess, search, train, audit, publish and gate; returns the summary with the MLflow run id.

    ``resume_run_id`` continues an interrupted run's search inside the same MLflow parent run.
    """
    entered, entered_wall = time.monotonic(), time.time()
    cfg = (config or PipelineConfig()).effective()
    # a scheduled run with MLflow down fails here, in seconds, naming the URI
    check_reachable(resolve_tracking_uri(cfg.tracking))
    tracker = runs.open_tracker(cfg)
    flow_run_id = str(flow_run.id) if flow_run.id else None
    with runs.parent_run(tracker, cfg, flow_run_id, resume_run_id,
                          flow_run_url=flow_run.ui_url,
                          name=flow_run.name or None) as (parent_id, workdir):
        timer = Timer()
        with timer("preprocess"):
            splits = t.preprocess(cfg)                                             # 1. preprocess
        with timer("search"):
            outcome = t.search(splits, cfg, tracker, parent_id, workdir,           # 2. search
                             resume=resume_run_id is not None)
        with timer("train"):
            final = t.train_final(splits, outcome, cfg)                            # 3. train
        with timer("audit"):
            result = t.audit(final, splits, outcome, cfg)                          # 4. audit
        with timer("publish"):
            summary = t.publish(tracker, parent_id, cfg, splits, outcome, final,   # 5. publish
                                result, flow_run_id)
        LAST_FLOW_TIMINGS.clear()
        LAST_FLOW_TIMINGS.update(timer.seconds | {
            "flow_body": round(time.monotonic() - entered, 3), "flow_entered_at": entered_wall,
            "ray_start": round(outcome.ray_start_seconds, 3)})
        steps.gate(tracker, parent_id, cfg, result, summary)                      # 6. gate
    return summary


__all__ = ["paramaudit_pipeline", "OverfitGateError"]
