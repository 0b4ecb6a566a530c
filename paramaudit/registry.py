"""The registry: the run's whole predictor as a new model version, and who is champion.

A version becomes ``champion`` when its verdict passes the gate (:func:`promotion_refusal`)
and, under ``registry.promotion: compare`` (the default), it scores at least as well as the
current champion on this run's test rows, less ``registry.promotion_tolerance``, on the search
metric's test form: both predictors answer the same raw rows (the champion loaded from the
registry), so the comparison is what serving would see. Otherwise it is ``challenger``, with
both scores and the reason in its tags. The first version of a name is champion on its verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from paramaudit.config import PipelineConfig
from paramaudit.data import Splits
from paramaudit.final_model import FinalModel
from paramaudit.lineage import since_champion
from paramaudit.metrics import SEARCH_METRICS, classification_metrics, regression_metrics
from paramaudit.overfit import Verdict
from paramaudit.progress import say
from paramaudit.serving.predictor import PROBA_PREFIX, Predictor
from paramaudit.tracking import Tracker

CHAMPION, CHALLENGER = "champion", "challenger"


def promotion_refusal(verdict: Verdict, register_on_warn: bool) -> str | None:
    """Why the model must not become champion, or None when it may.

    An overfit verdict never is; a warn only with ``overfit.register_on_warn``; and a model no
    better than always predicting the most frequent class never is, whatever that setting.
    """
    if verdict.verdict == "overfit":
        return "overfit"
    if (reason := verdict.no_better_than_baseline) is not None:
        return reason.message
    if verdict.verdict == "warn" and not register_on_warn:
        return "warn (overfit.register_on_warn: false)"
    return None


@dataclass
class Decision:
    """Whether the new version is promoted, why, and the two scores it was decided on."""

    promoted: bool
    reason: str | None
    metric: str | None = None
    challenger_score: float | None = None
    champion_score: float | None = None
    champion_version: str | None = None
    champion_columns: list[str] | None = None  # the champion's inputs, where it was loaded


def comparison_metric(search_metric: str, task: str) -> str:
    """The test-split metric a search metric stands for (val_loss: log loss, or RMSE)."""
    if search_metric == "val_loss":
        return "rmse" if task == "regression" else "log_loss"
    return search_metric.removeprefix("val_")


def _mode(metric: str) -> str:
    return SEARCH_METRICS.get(f"val_{metric}", "min" if metric in ("log_loss", "rmse", "mae")
                              else "max")


def score(predictor: Predictor, rows: pd.DataFrame, y: np.ndarray, classes: list[Any],
          metric: str) -> float | None:
    """``metric`` of the predictor's answers for raw ``rows``; ``y`` the targets (class indices
    into ``classes`` for a classifier); None when it answers other classes than these."""
    out = predictor.predict(rows)
    if predictor.task == "regression":
        value = regression_metrics(y, out["prediction"].to_numpy(np.float64))[metric]
        return None if value is None else float(value)
    columns = [f"{PROBA_PREFIX}{c}" for c in classes]
    if [str(c) for c in predictor.classes] != [str(c) for c in classes]:
        return None
    value = classification_metrics(y, out[columns].to_numpy(np.float64), [str(c) for c in classes])
    found = value.get(metric)
    return None if found is None else float(found)


def held_out_rows(splits: Splits, cfg: PipelineConfig) -> pd.DataFrame | None:
    """This run's test rows as raw columns, read again from the data (None: not traceable)."""
    ids = splits.test_row_ids
    if ids is None or not splits.inputs:
        return None
    if cfg.data.path is not None:
        from paramaudit.data.read import read_table

        frame = read_table(Path(cfg.data.path), exact={cfg.data.target or "", *cfg.data.columns})
        frame = frame.rename(columns=str)
    else:
        from paramaudit.data import load_dataset

        ds = load_dataset(cfg.data.model_copy(update={"max_rows": None, "image_shape": None}))
        frame = pd.DataFrame(ds.x, columns=ds.feature_names)
    return frame.iloc[ids].reset_index(drop=True)


def _current_champion(tracker: Tracker, name: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return tracker.client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None  # no champion yet (or the alias was removed by hand)


def decide(tracker: Tracker, name: str, version: str, cfg: PipelineConfig, verdict: Verdict,
           predictor: Predictor, splits: Splits, current: Any | None) -> Decision:
    """Whether ``version`` (this run's) becomes champion, under ``registry.promotion``;
    ``current`` is the champion's model version before this run (None: there is none)."""
    serving = None if current is None else str(current.version)
    refusal = promotion_refusal(verdict, cfg.overfit.register_on_warn)
    if refusal is not None:
        return Decision(False, refusal, champion_version=serving)
    if cfg.registry.promotion == "never":
        return Decision(False, "registry.promotion: never", champion_version=serving)
    if current is None or str(current.version) == version:
        return Decision(True, None if current else f"the first champion of {name!r}")
    if cfg.registry.promotion == "verdict":
        return Decision(True, None, champion_version=str(current.version))
    return _compare(tracker, name, str(current.version), cfg, predictor, splits)


def _compare(tracker: Tracker, name: str, champion: str, cfg: PipelineConfig,
             predictor: Predictor, splits: Splits) -> Decision:
    metric = comparison_metric(cfg.search.metric, predictor.task)
    rows = held_out_rows(splits, cfg)
    if rows is None:
        return Decision(True, "the test rows cannot be read again: promoted on its verdict",
                        metric, champion_version=champion)
    old = tracker.load_predictor(f"models:/{name}/{champion}")
    missing = [c for c in old.columns if c not in rows.columns]
    if missing or old.task != predictor.task:
        why = (f"column {missing[0]!r}" if missing else f"a {old.task}")
        return Decision(True, f"the champion (version {champion}) reads {why}, not this data: "
                        "promoted on its verdict", metric, champion_version=champion,
                        champion_columns=old.columns)
    classes = list(predictor.classes)
    mine = score(predictor, rows, splits.y_test, classes, metric)
    theirs = score(old, rows, splits.y_test, classes, metric)
    if mine is None or theirs is None:
        return Decision(True, f"the champion (version {champion}) answers other classes: "
                        "promoted on its verdict", metric, mine, theirs, champion,
                        champion_columns=old.columns)
    tol = cfg.registry.promotion_tolerance
    worse = mine < theirs - tol if _mode(metric) == "max" else mine > theirs + tol
    if worse:
        return Decision(False, f"test {metric} {mine:.4g} is worse than the champion's "
                        f"(version {champion}) {theirs:.4g}"
                        + (f" by more than registry.promotion_tolerance {tol:g}" if tol else ""),
                        metric, mine, theirs, champion, champion_columns=old.columns)
    return Decision(True, None, metric, mine, theirs, champion, champion_columns=old.columns)


def _test_keys(task: str) -> tuple[str, ...]:
    return ("r2", "rmse", "mae") if task == "regression" else (
        "accuracy", "balanced_accuracy", "f1_macro", "log_loss")


def describe(final: FinalModel, splits: Splits, verdict: Verdict, decision: Decision,
             parent_id: str, links: dict[str, str] | None = None,
             champion_metrics: dict[str, float] | None = None) -> str:
    """A version's description in the registry: the data, the scores beside the baseline's and
    the champion's, the verdict, the call, and links to the MLflow and Prefect runs."""
    rows = getattr(splits, "row_counts", {}) or {}
    params = sum(p.numel() for p in final.model.parameters())
    keys = _test_keys(final.task)
    metrics = ", ".join(f"{k} {final.test_metrics[k]:.4g} (baseline {final.baseline[k]:.4g})"
                        for k in keys if isinstance(final.test_metrics.get(k), float)
                        and isinstance(final.baseline.get(k), float))
    theirs = ", ".join(f"{k} {champion_metrics[f'test_{k}']:.4g}" for k in keys
                       if f"test_{k}" in (champion_metrics or {}))
    labels = f"; labels {', '.join(map(str, splits.class_values[:10]))}" if splits.class_values else ""
    n_rows = rows.get("read", len(splits.y_train) + len(splits.y_val) + len(splits.y_test))
    lines = [
        f"Data: {splits.name} ({n_rows:,} rows, sha256 {splits.content_hash[:12]}); "
        f"task {final.task}{labels}.",
        f"Test: {metrics}." if metrics else "Test: see the pipeline run.",
        *([f"The champion (version {decision.champion_version}) on its own test split: "
           f"{theirs}."] if theirs and decision.champion_version else []),
        f"Verdict: {verdict.verdict}" + (f" ({'; '.join(r.message for r in verdict.reasons)[:500]})"
                                        if verdict.reasons else "") + ".",
        f"Learned parameters: {params:,}.",
        "Promotion: " + ("champion" if decision.promoted else "challenger")
        + (f" ({decision.reason})" if decision.reason else "")
        + (f"; test {decision.metric} {decision.challenger_score:.4g} against the champion's "
           f"{decision.champion_score:.4g}" if decision.champion_score is not None
           and decision.challenger_score is not None else "") + ".",
        f"Pipeline run: {parent_id}.",
        *[f"{label}: {url}" for label, url in (links or {}).items() if url],
    ]
    return "\n\n".join(lines)


def _version_facts(final: FinalModel, splits: Splits, links: dict[str, str]) -> dict[str, str]:
    """What the description says, as version tags a search or a script can read."""
    rows = getattr(splits, "row_counts", {}) or {}
    facts = {"data": str(splits.name)[:500], "data_hash": splits.content_hash,
             "data_rows": str(rows.get("read", len(splits.y_train) + len(splits.y_val)
                                       + len(splits.y_test))),
             "task": final.task,
             "params_total": str(sum(p.numel() for p in final.model.parameters()))}
    if splits.class_values:
        facts["labels"] = ", ".join(map(str, splits.class_values))[:500]
    for k in _test_keys(final.task):
        if isinstance(final.test_metrics.get(k), float):
            facts[f"test_{k}"] = f"{final.test_metrics[k]:.6g}"
    facts.update({key.lower().replace(" ", "_") + "_url": url for key, url in links.items() if url})
    return facts


def _describe_version(tracker: Tracker, name: str, version: str, cfg: PipelineConfig,
                      final: FinalModel, splits: Splits, verdict: Verdict, decision: Decision,
                      parent_id: str, predictor: Predictor, links: dict[str, str],
                      champion_metrics: dict[str, float] | None) -> None:
    """The version's tags and description, and the registered model's description."""
    client = tracker.client
    tags = {**_version_facts(final, splits, links), "overfit_verdict": verdict.verdict,
            "promotion": CHAMPION if decision.promoted else CHALLENGER,
            "promotion_policy": cfg.registry.promotion}
    if decision.reason:
        tags["promotion_reason"] = decision.reason
    if not decision.promoted and promotion_refusal(verdict, cfg.overfit.register_on_warn):
        tags["gate"] = f"failed: {decision.reason}"
    if decision.metric:
        tags["compared_on"] = f"test {decision.metric}"
    for key, value in (("challenger_score", decision.challenger_score),
                       ("champion_score", decision.champion_score),
                       ("champion_version", decision.champion_version)):
        if value is not None:
            tags[key] = str(value)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.update_model_version(name, version, description=describe(
        final, splits, verdict, decision, parent_id, links, champion_metrics))
    client.update_registered_model(name, description=(
        f"paramaudit's {predictor.task} model of {splits.name}: raw rows in (columns "
        f"{', '.join(predictor.columns[:8])}{' ...' if len(predictor.columns) > 8 else ''}), "
        f"`prediction` out{', with `proba_<label>` per class' if predictor.classes else ''}. "
        f"`champion` is the version serving; `challenger` the last one that was not promoted."))


def register(tracker: Tracker, parent_id: str, cfg: PipelineConfig, final: FinalModel,
             verdict: Verdict, splits: Splits, mlflow_url: str | None = None) -> dict[str, Any]:
    """Log the run's predictor as a new version of the registered model; champion or
    challenger by :func:`decide`. Returns the summary's ``registry`` entry.

    ``mlflow_url`` is the pipeline run in the MLflow UI; the Prefect flow run's URL comes from
    the run's ``prefect_flow_run_url`` tag, where a Prefect flow runs it.
    """
    name = cfg.tracking.registered_model_name or cfg.experiment
    predictor = Predictor.of(final, splits)
    # publish may be retried: a version this run already registered is reused, not duplicated
    mine = [v for v in tracker.client.search_model_versions(f"name = '{name}'")
            if v.run_id == parent_id]
    if mine:
        version = str(mine[0].version)
    else:
        info = tracker.log_model(parent_id, predictor, splits.example_rows, registered_name=name)
        version = str(getattr(info, "registered_model_version", None))
    previous = _current_champion(tracker, name)  # before this version may take the alias
    decision = decide(tracker, name, version, cfg, verdict, predictor, splits, previous)
    alias = CHAMPION if decision.promoted else CHALLENGER
    tracker.client.set_registered_model_alias(name, alias, version)
    links = {"MLflow run": mlflow_url or "",
             "Prefect flow run": tracker.client.get_run(parent_id).data.tags.get(
                 "prefect_flow_run_url", "")}
    champion_metrics = (tracker.client.get_run(previous.run_id).data.metrics
                        if previous is not None and previous.run_id else None)
    _describe_version(tracker, name, version, cfg, final, splits, verdict, decision, parent_id,
                      predictor, links, champion_metrics)
    run_tags = {"registry_gate": CHAMPION if decision.promoted else "not promoted",
                "registry_version": version, "registry_alias": alias}
    if decision.reason and not decision.promoted:
        run_tags["registry_gate_reason"] = decision.reason
        say(f"  registry: version {version} of {name!r} is the challenger: {decision.reason}")
    else:
        say(f"  registry: version {version} of {name!r} is the champion"
            + (f" ({decision.reason})" if decision.reason else "")
            + (f": test {decision.metric} {decision.challenger_score:.4g} against "
               f"{decision.champion_score:.4g}" if decision.champion_score is not None
               and decision.challenger_score is not None else ""))
    tracker.set_tags(parent_id, run_tags)
    lineage = None
    if previous is not None and previous.run_id and previous.run_id != parent_id:
        lineage = since_champion(tracker, parent_id, previous.run_id, str(previous.version),
                                 predictor.columns, decision.champion_columns, name)
    return {"since_champion": lineage, "name": name, "version": version,
            "promoted": decision.promoted, "champion": decision.promoted, "alias": alias,
            "reason": decision.reason,
            "metric": decision.metric, "challenger_score": decision.challenger_score,
            "champion_score": decision.champion_score,
            "champion_version": decision.champion_version}
