"""The MLflow client of one pipeline run: a parent run per pipeline run, a child run per trial.

Everything goes through an explicit :class:`mlflow.MlflowClient` bound to one tracking URI, so two
pipelines in one process (or a Ray Tune callback on another thread) never share fluent state.
Hyperparameters are logged as MLflow params; learned-parameter counts and scores as metrics.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from paramaudit import stopping
from paramaudit.config import TrackingConfig
from paramaudit.environment import quiet_environment
from paramaudit.errors import TrackingError
from paramaudit.tracking.uris import (
    artifact_location,
    redact_text,
    remember_secret,
    resolve_tracking_uri,
)

PARENT_TAG = "mlflow.parentRunId"


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """An exclusive lock beside a sqlite store's file while it is opened and set up."""
    if not uri.startswith("sqlite:///") or uri.endswith(":memory:"):
        yield
        return
    import fcntl

    db = Path(uri.removeprefix("sqlite:///"))
    with open(db.with_name(db.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _metric_value(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _param_value(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, dict | list) else str(v)
    return text[:6000]


class Tracker:
    """A thin, explicit wrapper over MlflowClient for the pipeline's runs."""

    def __init__(self, cfg: TrackingConfig, experiment: str) -> None:
        quiet_environment()
        from mlflow import MlflowClient

        self.uri = resolve_tracking_uri(cfg)
        self.cfg = cfg
        if urlsplit(self.uri).password is not None:
            remember_secret(urlsplit(self.uri).password)
            # MLflow prints "View run ... at: <tracking URI>/#/..." at every run's end on a
            # tracking server, the URI with its password in it
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        self.experiment_name = experiment
        with _store_lock(self.uri):
            # the first client on a new sqlite store creates its tables; two pipelines starting
            # together would both try (and one fail with "table ... already exists")
            self.client = MlflowClient(tracking_uri=self.uri)
            self.experiment_id = self._ensure_experiment(artifact_location(cfg, self.uri))

    def _ensure_experiment(self, artifact_location: str | None) -> str:
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(self.experiment_name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                raise TrackingError(
                    f"MLflow experiment {self.experiment_name!r} is deleted; restore it or "
                    "choose another --experiment"
                )
            return exp.experiment_id
        try:
            return self.client.create_experiment(
                self.experiment_name, artifact_location=artifact_location
            )
        except MlflowException:
            # another pipeline created it between our lookup and create
            exp = self.client.get_experiment_by_name(self.experiment_name)
            if exp is None:
                raise
            return exp.experiment_id

    # -- runs --------------------------------------------------------------------------------
    def start_run(self, name: str, tags: Mapping[str, str] | None = None,
                  parent_id: str | None = None) -> str:
        """Create a RUNNING run (nested under parent_id when given) and return its id."""
        all_tags = dict(tags or {})
        if parent_id:
            all_tags[PARENT_TAG] = parent_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        return run.info.run_id

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        """Set a terminal status: FINISHED, FAILED or KILLED."""
        self.client.set_terminated(run_id, status=status)

    def status(self, run_id: str) -> str:
        """The run's current status."""
        return self.client.get_run(run_id).info.status

    @contextmanager
    def parent_run(self, name: str, tags: Mapping[str, str],
                   run_id: str | None = None) -> Iterator[str]:
        """A parent run that always ends: FINISHED, KILLED on interrupt, FAILED on any error.

        With ``run_id`` an existing run is reopened (set RUNNING again), as --resume does.
        """
        if run_id is None:
            run_id = self.start_run(name, tags)
        else:
            self.client.update_run(run_id, status="RUNNING")
            self.set_tags(run_id, tags)
        try:
            yield run_id
        except Exception as err:
            # a stop can surface as an ordinary error (a library wrapping the KeyboardInterrupt
            # it caught): the run was still stopped, not broken
            status = "KILLED" if stopping.requested() else "FAILED"
            self._fail(run_id, status, f"{type(err).__name__}: {err}")
            raise
        except BaseException as err:
            # not an Exception: Ctrl-C, SIGTERM (as the CLI or Prefect raises it), an exit
            self._fail(run_id, "KILLED", f"interrupted ({type(err).__name__})")
            raise
        else:
            self.end_run(run_id, "FINISHED")

    def _fail(self, run_id: str, status: str, error: str) -> None:
        try:
            self.set_tags(run_id, {"error": redact_text(error)[:4000]})
        finally:
            self.end_run(run_id, status)

    # -- data --------------------------------------------------------------------------------
    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Hyperparameters and settings (never learned parameters)."""
        from mlflow.entities import Param

        items = [Param(str(k), _param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i:i + 100])

    def log_metrics(self, run_id: str, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Numeric metrics; non-finite values are skipped (MLflow rejects NaN in some stores)."""
        self.log_record(run_id, [(metrics, step or 0)], {})

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """String tags (decisions with their reasons)."""
        self.log_record(run_id, [], tags)

    def log_record(self, run_id: str, steps: Sequence[tuple[Mapping[str, Any], int]],
                   tags: Mapping[str, Any]) -> None:
        """Metrics at their steps, then tags, in as few log_batch calls as MLflow allows.

        A trial's whole record usually fits one call (up to 1,000 values, 100 of them tags)
        rather than one per epoch. The tags (its status among them) go in the last call, so a
        record cut short by an error never reads as a finished trial with part of its history.
        Non-finite metric values are skipped; tag values are cut to 5,000 characters.
        """
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        metrics = [Metric(str(k), val, now, step) for values, step in steps
                   for k, v in values.items() if (val := _metric_value(v)) is not None]
        tag_items = [RunTag(str(k), str(v)[:5000]) for k, v in tags.items()]
        calls = [(metrics[i:i + 1000], []) for i in range(0, len(metrics), 1000)]
        for i in range(0, len(tag_items), 100):
            chunk = tag_items[i:i + 100]
            if calls and not calls[-1][1] and len(calls[-1][0]) + len(chunk) <= 1000:
                calls[-1] = (calls[-1][0], chunk)  # the first tags fit beside the last metrics
            else:
                calls.append(([], chunk))
        for batch_metrics, batch_tags in calls:
            self.client.log_batch(run_id, metrics=batch_metrics, tags=batch_tags)

    def log_dict(self, run_id: str, data: Any, artifact_file: str) -> None:
        """A JSON artifact."""
        self.client.log_dict(run_id, data, artifact_file)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """A text artifact (markdown, CSV)."""
        self.client.log_text(run_id, text, artifact_file)

    def log_file(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        """Any local file as an artifact."""
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_model(self, run_id: str, predictor: Any, example: Any,
                  registered_name: str | None = None) -> Any:
        """The whole predictor (paramaudit.serving: raw rows in, labels out) as an MLflow pyfunc
        model on the given run, with its code, signature and a few raw rows as its example."""
        import sys

        import mlflow
        import mlflow.models
        import mlflow.pyfunc

        from paramaudit.serving import pyfunc

        path = list(sys.path)
        with _fluent_tracking_uri(self.uri), scratch_dir() as tmp, _restored_path(path):
            code = [pyfunc.ship_code(Path(tmp) / "code"),
                    *pyfunc.user_code(predictor, Path(tmp) / "user")]
            artifact = pyfunc.save_predictor(predictor, Path(tmp))
            # created here so the model lands in this run's experiment: log_model alone would
            # file it under the fluent API's active (default) experiment
            logged = mlflow.initialize_logged_model(name="model", source_run_id=run_id,
                                                    experiment_id=self.experiment_id)
            # the input example is checked as MLflow logs it: the model is loaded back and
            # predicts those raw rows, so a predictor that cannot serve fails here, not later
            # Model.log, as mlflow.pyfunc.log_model calls it, with the run named: the pyfunc
            # function takes no run_id and would log to the fluent API's active run instead
            return mlflow.models.Model.log(
                artifact_path=None, name="model", flavor=mlflow.pyfunc,
                python_model=pyfunc.MODEL_CODE,  # models from code: no pickled wrapper
                artifacts={pyfunc.ARTIFACT_KEY: str(artifact)}, code_paths=[str(c) for c in code],
                pip_requirements=pyfunc.requirements(), run_id=run_id,
                model_id=logged.model_id, registered_model_name=registered_name,
                await_registration_for=0, signature=pyfunc.signature(predictor),
                input_example=example,
                metadata={"task": predictor.task, "classes": [str(c) for c in predictor.classes],
                          "input_types": pyfunc.input_types(predictor)},
            )

    def load_predictor(self, uri: str) -> Any:
        """The predictor of a logged model in this tracker's store (:func:`load_predictor`)."""
        return load_predictor(uri, self.uri)

    def child_runs(self, parent_id: str) -> list[Any]:
        """Runs nested under a parent, oldest first."""
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}'",
            max_results=5000,
        )
        return sorted(runs, key=lambda r: r.info.start_time)


def load_predictor(uri: str, tracking_uri: str) -> Any:
    """The predictor (paramaudit.serving.Predictor) of a logged model, by this process's own
    classes: ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` or ``runs:/RUN/model``."""
    import mlflow.artifacts
    import torch

    from paramaudit.serving.pyfunc import PREDICTOR_FILE

    with _fluent_tracking_uri(tracking_uri), scratch_dir() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
        path = Path(local) / "artifacts" / PREDICTOR_FILE
        if not path.is_file():
            raise OSError(f"{uri} is not a paramaudit model (no artifacts/{PREDICTOR_FILE})")
        # the user's model code the model ships (paramaudit_usercode, their package) is found
        # after this process's own paths, so paramaudit's classes stay this process's
        with _restored_path(list(sys.path)):
            sys.path.append(str(Path(local) / "code"))
            return torch.load(path, map_location="cpu", weights_only=False)


@contextmanager
def _restored_path(path: list[str]) -> Iterator[None]:
    """sys.path as it was: MLflow's check of the input example loads the model in this process
    and puts the model's (temporary) code folder first on sys.path for good."""
    import sys

    try:
        yield
    finally:
        sys.path[:] = path


@contextmanager
def _fluent_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at ``uri`` for one call, then back to what it was.

    ``mlflow.pyfunc.log_model`` has no client form; setting the URI for good would redirect
    whatever else the process logs (a user's own code, a second tracker).
    """
    import mlflow

    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]  # None: unset again


def scratch_dir(prefix: str = "paramaudit-") -> tempfile.TemporaryDirectory[str]:
    """A temporary folder for artifacts before they are logged."""
    return tempfile.TemporaryDirectory(prefix=prefix)
