"""A pipeline run's identity: its name, MLflow parent run, work folder and what --resume reads."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from paramaudit.config import PipelineConfig
from paramaudit.progress import say
from paramaudit.tracking import Tracker, redact, scratch_dir

WORK_ROOT = Path(".paramaudit")


def data_label(cfg: PipelineConfig) -> str:
    """The data set's short name: a built-in name or the file's stem."""
    return cfg.data.dataset or Path(str(cfg.data.path)).stem


def run_name(cfg: PipelineConfig) -> str:
    """A run name that says what ran: data, search, trials and date."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    smoke = " smoke" if cfg.smoke else ""
    return (f"{data_label(cfg)} {cfg.model} {cfg.search.algorithm}-search "
            f"{cfg.search.trials}t{smoke} {stamp}")


def open_tracker(cfg: PipelineConfig) -> Tracker:
    """The MLflow tracker for this run's experiment."""
    return Tracker(cfg.tracking, cfg.experiment)


def run_workdir(run_id: str) -> Path:
    """The run's own folder under the working directory (Ray Tune's state lives here)."""
    return (WORK_ROOT / "runs" / run_id).resolve()


TUNE_EXPERIMENT = "search"  # Ray Tune's experiment folder below search_dir: what --resume restores


def search_dir(workdir: Path) -> Path:
    """Where Ray Tune keeps a run's search state (its experiment is ``TUNE_EXPERIMENT`` below)."""
    return workdir / "tune"


@contextlib.contextmanager
def parent_run(tracker: Tracker, cfg: PipelineConfig, flow_run_id: str | None,
               resume_run_id: str | None = None,
               flow_run_url: str | None = None,
               name: str | None = None) -> Iterator[tuple[str, Path]]:
    """The MLflow parent run (ended FINISHED, FAILED or KILLED) and the run's work folder.

    ``name`` is the Prefect flow run's name where there is one, so that both UIs show the same
    name (computed twice, the minute in its stamp can differ).
    """
    tags = {"paramaudit.kind": "pipeline", "dataset": data_label(cfg),
            "search_algorithm": cfg.search.algorithm, "smoke": str(cfg.smoke).lower()}
    if flow_run_id:
        tags["prefect_flow_run_id"] = flow_run_id
    if flow_run_url:
        tags["prefect_flow_run_url"] = flow_run_url
    if resume_run_id:
        tags["resumed"] = "true"
    with tracker.parent_run(name or run_name(cfg), tags, run_id=resume_run_id) as parent_id:
        verb = "resuming" if resume_run_id else "run"
        say(f"MLflow: experiment {cfg.experiment!r}, {verb} {parent_id} at {redact(tracker.uri)}")
        workdir = run_workdir(parent_id)
        workdir.mkdir(parents=True, exist_ok=True)
        if not resume_run_id:
            tracker.log_params(parent_id, settings_params(cfg, tracker.uri))
            # the exact config, so that --resume continues with what this run started with
            tracker.log_dict(parent_id, cfg.model_dump(mode="json"), "config.json")
        yield parent_id, workdir


def load_resume_config(tracker_uri: str, run_id: str) -> tuple[PipelineConfig, str]:
    """The config an interrupted run started with, and its experiment; a one-line error if none."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from paramaudit.config import build_config
    from paramaudit.errors import UserInputError

    client = MlflowClient(tracking_uri=tracker_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UserInputError(f"--resume: no MLflow run {run_id!r} at {redact(tracker_uri)}") from None
    if run.data.tags.get("paramaudit.kind") != "pipeline":
        raise UserInputError(f"--resume: run {run_id} is not a paramaudit pipeline run")
    if run.info.status == "FINISHED":
        raise UserInputError(f"--resume: run {run_id} already finished; nothing to resume")
    if not (search_dir(run_workdir(run_id)) / TUNE_EXPERIMENT).is_dir():
        raise UserInputError(f"--resume: no search state for run {run_id} under "
                             f"{run_workdir(run_id)} (run from the folder the run started in)")
    with scratch_dir() as tmp:
        path = client.download_artifacts(run_id, "config.json", tmp)
        raw = json.loads(Path(path).read_text())
    return build_config(raw), run.info.experiment_id


def settings_params(cfg: PipelineConfig, uri: str) -> dict[str, Any]:
    """Run settings as MLflow params (prefixed, so they never pass for hyperparameters)."""
    return {
        "setting.data": data_label(cfg),
        "setting.model": cfg.model,
        "setting.search_algorithm": cfg.search.algorithm,
        "setting.trials": cfg.search.trials,
        "setting.scheduler": cfg.search.scheduler,
        "setting.metric": cfg.search.metric,
        "setting.max_epochs": cfg.train.max_epochs,
        "setting.patience": cfg.train.patience,
        "setting.seed": cfg.seed,
        "setting.smoke": cfg.smoke,
        "setting.scaler": json.dumps(cfg.preprocess.scaler),
        "setting.pca_components": json.dumps(cfg.preprocess.pca_components),
        "setting.augment": json.dumps(cfg.preprocess.augment),
        "setting.categorical": cfg.data.categorical,
        "setting.impute": json.dumps(cfg.preprocess.impute),
        "setting.cv_folds": cfg.search.cv_folds,
        "setting.val_size": cfg.data.val_size,
        "setting.test_size": cfg.data.test_size,
        "setting.search_space": json.dumps(cfg.search.space),
        "setting.tracking_uri": redact(uri),
    }
