"""``paramaudit history``: one row per pipeline run of an experiment, oldest first.

Read from the MLflow store alone (the parent runs' params, metrics and tags), so it works on
any store the pipeline wrote, local or a team's server. The weekly audit deployment logs the
same table and trend plot to its own MLflow run (:func:`log_history`).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from paramaudit.errors import UserInputError
from paramaudit.lineage import hyperparameters
from paramaudit.tracking import Tracker

COLUMNS = ("date", "run", "data", "data_hash", "rows", "search", "best_hyperparameters",
           "test_metric", "test_score", "params_trainable", "verdict", "registry")
_SCORES = ("test_accuracy", "test_r2")  # a classifier's, a regression's headline


def _row(run: Any, champions: set[str]) -> dict[str, Any]:
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    metric = next((m for m in _SCORES if m in metrics), None)
    version = tags.get("registry_version")
    registry = ""
    if version is not None:
        if run.info.run_id in champions:
            registry = f"v{version} champion"
        elif tags.get("registry_gate") == "champion":
            registry = f"v{version} (was champion)"
        else:
            registry = f"v{version} {tags.get('registry_alias', 'registered')}"
    trials = params.get("setting.trials", "?")
    return {
        "date": dt.datetime.fromtimestamp(run.info.start_time / 1000, dt.timezone.utc)
        .strftime("%Y-%m-%d %H:%M"),
        "run": run.info.run_id,
        "data": params.get("setting.data", tags.get("dataset", "")),
        "data_hash": tags.get("data_hash", "")[:12],
        "rows": tags.get("data_rows", ""),
        "search": f"{params.get('setting.search_algorithm', '?')} x{trials}",
        "best_hyperparameters": " ".join(f"{k}={v}" for k, v in
                                         sorted(hyperparameters(params).items())),
        "test_metric": (metric or "").removeprefix("test_"),
        "test_score": metrics.get(metric) if metric else None,
        "params_trainable": int(metrics["params_trainable"]) if "params_trainable" in metrics
        else None,
        "verdict": tags.get("overfit_verdict", ""),
        "registry": registry,
    }


def history(tracking_uri: str, experiment: str, registered_name: str | None = None
            ) -> pd.DataFrame:
    """The experiment's finished pipeline runs, oldest first (see ``COLUMNS``)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise UserInputError(f"--experiment: no experiment {experiment[:200]!r} at {tracking_uri}")
    runs = client.search_runs([exp.experiment_id], "tags.`paramaudit.kind` = 'pipeline'",
                              max_results=5000, order_by=["attributes.start_time ASC"])
    champions: set[str] = set()
    try:
        champions.add(client.get_model_version_by_alias(registered_name or experiment,
                                                        "champion").run_id)
    except MlflowException:
        pass  # nothing registered under that name, or no champion yet
    rows = [_row(r, champions) for r in runs if r.info.status == "FINISHED"]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def trend_plot(table: pd.DataFrame, path: Path) -> Path:
    """The test score and the learned-parameter count of each run over time, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    when = pd.to_datetime(table["date"])
    metric = next((m for m in table["test_metric"] if m), "score")
    ax.plot(when, table["test_score"], "o-", color="tab:blue", label=f"test {metric}")
    ax.set_ylabel(f"test {metric}")
    other = ax.twinx()
    other.plot(when, table["params_trainable"], "s--", color="tab:orange",
               label="learned parameters")
    other.set_ylabel("learned parameters")
    ax.set_title("paramaudit runs over time")
    fig.autofmt_xdate()
    fig.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def log_history(tracker: Tracker, run_id: str, experiment: str,
                registered_name: str | None = None) -> pd.DataFrame | None:
    """The experiment's history as artifacts of run ``run_id`` (``history/history.csv`` and
    ``history/history.png``) and its length as the metric ``history_runs``; None, with the
    reason as the run's ``history`` tag, when the experiment does not exist yet."""
    try:
        table = history(tracker.uri, experiment, registered_name)
    except UserInputError:
        tracker.set_tags(run_id, {"history": f"no experiment {experiment[:200]!r} yet"})
        return None
    tracker.set_tags(run_id, {"history": f"{len(table)} finished pipeline run(s) of "
                                         f"{experiment[:200]!r}"})
    tracker.log_metrics(run_id, {"history_runs": float(len(table))})
    with tempfile.TemporaryDirectory() as tmp:
        table.to_csv(Path(tmp) / "history.csv", index=False)
        tracker.log_file(run_id, Path(tmp) / "history.csv", "history")
        if not table.empty:
            tracker.log_file(run_id, trend_plot(table, Path(tmp) / "history.png"), "history")
    return table
