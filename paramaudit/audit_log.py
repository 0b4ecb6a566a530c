"""The parameter audit in MLflow: its artifacts and metrics, and the audit-only run.

Used by the pipeline's publish step (paramaudit.publish) for the chosen model and by the
audit-only flow (``paramaudit-audit``) for a model that is not trained.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from paramaudit import audit as audit_lib
from paramaudit import report
from paramaudit.progress import say
from paramaudit.spec import load_spec
from paramaudit.tracking import Tracker, scratch_dir


def log_audit(tracker: Tracker, run_id: str, rep: audit_lib.AuditReport) -> None:
    """The per-layer audit as MLflow artifacts: JSON, CSV, markdown and a bar chart."""
    with scratch_dir() as tmp:
        d = Path(tmp)
        (d / "parameter_audit.json").write_text(json.dumps(rep.to_dict(), indent=2))
        report.layers_dataframe(rep).to_csv(d / "parameter_audit.csv", index=False)
        (d / "parameter_audit.md").write_text(report.render(rep, "markdown"))
        report.plot_layers(rep, d / "parameters_per_layer.png")
        for p in sorted(d.iterdir()):
            tracker.log_file(run_id, p, "audit")


def audit_metrics(rep: audit_lib.AuditReport) -> dict[str, float]:
    """Learned-parameter counts of an audit, as MLflow metrics."""
    mem = rep.training_memory_bytes.get(rep.optimizer or "adam", {})
    measured = rep.measured_training_memory
    return {
        "params_total": rep.total_params, "params_trainable": rep.trainable_params,
        "params_frozen": rep.frozen_params, "buffer_elements": rep.buffer_elements,
        "params_bytes": rep.bytes, "params_embedding": rep.embedding_params,
        "params_non_embedding": rep.non_embedding_params,
        **{f"training_memory_{k}_bytes": v for k, v in mem.items()},
        **({"training_memory_measured_bytes": measured["peak_bytes"]}
           if measured and measured.get("peak_bytes") is not None else {}),
    }


def audit_spec(spec: str, meta: bool = False, optimizer: str = "adam") -> audit_lib.AuditReport:
    """Build a model from a SPEC (optionally on the meta device) and audit it."""
    return audit_lib.audit_model(load_spec(spec, meta=meta), optimizer=optimizer)


def publish_standalone_audit(tracker: Tracker, spec: str, meta: bool, rep: audit_lib.AuditReport,
                             flow_run_id: str | None) -> str:
    """An audit-only MLflow run: the SPEC as params, counts as metrics, the audit as artifacts."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    tags = {"paramaudit.kind": "audit", "spec": spec}
    if flow_run_id:
        tags["prefect_flow_run_id"] = flow_run_id
    with tracker.parent_run(f"audit {spec}{' (meta)' if meta else ''} {stamp}", tags) as run_id:
        tracker.log_params(run_id, {"setting.spec": spec, "setting.meta": meta,
                                    "setting.optimizer": rep.optimizer or "adam"})
        tracker.log_metrics(run_id, audit_metrics(rep))
        log_audit(tracker, run_id, rep)
    say(f"audit: {spec}: {rep.total_params:,} learned parameters; MLflow run {run_id}")
    return run_id
