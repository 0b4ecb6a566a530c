"""Prefect tasks of the audit-only flow."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from paramaudit import audit_log, report
from paramaudit import history as runs_history
from paramaudit.audit import AuditReport
from paramaudit.tracking import Tracker


@task(name="audit-model", cache_policy=NO_CACHE)
def audit_model(spec: str, meta: bool, optimizer: str) -> AuditReport:
    """Build the model (on the meta device when asked) and count its parameters."""
    return audit_log.audit_spec(spec, meta=meta, optimizer=optimizer)


@task(name="publish-audit", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def publish_audit(tracker: Tracker, spec: str, meta: bool, rep: AuditReport, depth: int | None,
                  flow_run_id: str | None) -> str:
    """The audit as an MLflow run and as Prefect table and markdown artifacts."""
    run_id = audit_log.publish_standalone_audit(tracker, spec, meta, rep, flow_run_id)
    shown = rep.grouped(depth) if depth else rep
    create_table_artifact(
        key="parameter-audit",
        table=report.layers_dataframe(shown).to_dict(orient="records"),
        description=f"{spec}: {rep.total_params:,} learned parameters. MLflow run {run_id}.",
    )
    create_markdown_artifact(
        key="parameter-audit-report",
        markdown=f"# Parameter audit of `{spec}`\n\nMLflow run `{run_id}`\n\n"
        + report.render(rep, "markdown", depth=depth),
        description=f"Parameter audit of {spec}",
    )
    return run_id


@task(name="publish-history", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def publish_history(tracker: Tracker, run_id: str, experiment: str) -> int | None:
    """The pipeline experiment's history (one row per run) and its trend plot on the audit's
    MLflow run, and the table as a Prefect artifact; the number of runs, None if no experiment."""
    table = runs_history.log_history(tracker, run_id, experiment)
    if table is None:
        create_markdown_artifact(key="history", markdown=(
            f"# History of `{experiment}`\n\nNo such experiment yet: no pipeline has run in it."),
            description=f"No pipeline runs of {experiment} yet")
        return None
    create_table_artifact(
        key="history",
        table=table.astype(str).to_dict(orient="records"),
        description=(f"{len(table)} finished pipeline runs of {experiment}, oldest first; the "
                     f"trend plot is history/history.png in MLflow run {run_id}."),
    )
    return len(table)
