"""Prefect tasks of the pipeline: a name, retries and artifacts, then one call into paramaudit."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from paramaudit import pipeline as steps
from paramaudit import publish as publishing
from paramaudit.config import PipelineConfig
from paramaudit.data import Splits, preprocess_cache_key
from paramaudit.final_model import FinalModel
from paramaudit.search import SearchOutcome
from paramaudit.tracking import Tracker


def _preprocess_key(context: Any, parameters: dict[str, Any]) -> str:
    """The data's content hash plus the preprocessing config: unchanged data skips the step."""
    cfg = parameters["cfg"]
    return "paramaudit-preprocess-" + preprocess_cache_key(cfg.data, cfg.preprocess, cfg.seed)


# A table larger than this is preprocessed again on every run rather than cached: the cached
# result is the pickled Splits (raw and preprocessed rows, twice the feature matrix), which
# Prefect serialises whole in memory, adding several copies of the matrix to the run's peak.
UNCACHED_TABLE_BYTES = 64 << 20


def _preprocess(cfg: PipelineConfig) -> Splits:
    """Load, validate, split (stratified) and scale on the train split only."""
    return steps.preprocess(cfg)


# Bad input is not transient: no retries on the steps that read the user's data or config.
_cached_preprocess = task(name="preprocess", cache_key_fn=_preprocess_key, persist_result=True,
                          cache_expiration=timedelta(days=7))(_preprocess)
_uncached_preprocess = task(name="preprocess", cache_policy=NO_CACHE,
                            persist_result=False)(_preprocess)


def preprocess(cfg: PipelineConfig, **call: Any) -> Any:
    """Step 1 as a Prefect task (``call``: the task call's options, such as return_state):
    cached by the data's content hash, unless the table is big."""
    path = cfg.data.path
    big = path is not None and path.is_file() and path.stat().st_size > UNCACHED_TABLE_BYTES
    return (_uncached_preprocess if big else _cached_preprocess)(cfg, **call)


@task(name="search", cache_policy=NO_CACHE)
def search(splits: Splits, cfg: PipelineConfig, tracker: Tracker, parent_id: str,
           workdir: Path, resume: bool = False) -> SearchOutcome:
    """Ray Tune search over the hyperparameter space; trials nested under the parent run."""
    return steps.search(splits, cfg, tracker, parent_id, workdir, resume=resume)


@task(name="train-final", cache_policy=NO_CACHE)
def train_final(splits: Splits, outcome: SearchOutcome, cfg: PipelineConfig) -> FinalModel:
    """The chosen configuration's model (its trial's weights, or retrained); evaluated once on test."""
    return steps.train_final(splits, outcome, cfg)


@task(name="audit", cache_policy=NO_CACHE)
def audit(final: FinalModel, splits: Splits, outcome: SearchOutcome,
          cfg: PipelineConfig) -> steps.AuditResult:
    """Per-layer parameter counts and the overfitting verdict."""
    return steps.audit(final, splits, outcome, cfg)


@task(name="publish", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def publish(tracker: Tracker, parent_id: str, cfg: PipelineConfig, splits: Splits,
            outcome: SearchOutcome, final: FinalModel, result: steps.AuditResult,
            flow_run_id: str | None) -> dict[str, Any]:
    """MLflow params, metrics, tags and artifacts; Prefect table and markdown artifacts."""
    done = publishing.publish(tracker, parent_id, cfg, splits, outcome, final, result, flow_run_id)
    summary = done.summary
    link = f"[MLflow run {parent_id}]({summary['mlflow_ui']['url']})"
    create_table_artifact(
        key="parameter-audit",
        table=result.layer_rows,
        description=(f"Learned parameters per layer of the chosen model: "
                     f"{result.report.total_params:,} in all. {link}"),
    )
    create_markdown_artifact(
        key="overfit-verdict",
        markdown=done.report_markdown,
        description=f"Overfitting verdict: {result.verdict.verdict}. {link}",
    )
    tables = (
        ("hyperparameter-importance", done.importance_rows,
         "Which hyperparameters mattered to the val score across the trials."),
        ("capacity-vs-generalisation", done.capacity_rows,
         "Trainable parameters against train/val loss for every trial."),
        ("confusion-matrix", done.confusion_rows,
         f"The chosen model on the test split: {done.baseline_note} {link}"),
        ("data-columns", done.columns_rows, f"The data's columns as the pipeline read them. {link}"),
    )
    registry = summary.get("registry")
    if registry:
        create_markdown_artifact(key="registry", markdown=_registry_markdown(registry),
                                 description=f"The registry's decision on this run. {link}")
    if done.since_champion_markdown:
        create_markdown_artifact(key="since-the-champion", markdown=done.since_champion_markdown,
                                 description=f"Since the champion: what this run changed. {link}")
    for key, rows, description in tables:
        if rows:  # a table only where the run has one (no trials to rank, a regression, ...)
            create_table_artifact(key=key, table=rows, description=description)
    return summary


def _registry_markdown(entry: dict[str, Any]) -> str:
    """The registry's decision in words: which version, champion or challenger, and why."""
    role = "champion" if entry["promoted"] else "challenger"
    lines = [f"# Registry: version {entry['version']} of `{entry['name']}` is the {role}", ""]
    if entry.get("reason"):
        lines.append(f"- why: {entry['reason']}")
    if entry.get("champion_score") is not None and entry.get("challenger_score") is not None:
        lines.append(f"- test {entry['metric']}: this run {entry['challenger_score']:.4g}, the "
                     f"champion (version {entry['champion_version']}) {entry['champion_score']:.4g}")
    elif entry.get("champion_version") and not entry["promoted"]:
        lines.append(f"- version {entry['champion_version']} stays the champion")
    lines.append(f"- serve it: `mlflow models serve -m models:/{entry['name']}@{role}`")
    return "\n".join(lines) + "\n"
