"""MLflow: one parent run per pipeline run, one nested child run per trial.

Everything goes through an explicit :class:`mlflow.MlflowClient` bound to one tracking URI, so two
pipelines in one process (or a Ray Tune callback on another thread) never share fluent state.
Hyperparameters are logged as MLflow params; learned-parameter counts and scores as metrics.
"""

from __future__ import annotations

import base64
import configparser
import http.client
import json
import math
import os
import queue
import re
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from paramaudit import stopping
from paramaudit.config import TrackingConfig
from paramaudit.environment import quiet_environment
from paramaudit.errors import TrackingError

DEFAULT_URI = "sqlite:///mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
PARENT_TAG = "mlflow.parentRunId"


def resolve_tracking_uri(cfg: TrackingConfig) -> str:
    """Config first, then MLFLOW_TRACKING_URI, then a sqlite store in the working directory."""
    return cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def is_local_store(uri: str) -> bool:
    """True for stores that live on this machine's disk (sqlite, plain files)."""
    scheme = urlsplit(uri).scheme
    return scheme in ("sqlite", "file", "") or re.match(r"^[A-Za-z]:", uri) is not None


def redact(uri: str) -> str:
    """The URI with any password replaced, safe for logs and MLflow params."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rpartition("@")[2]  # keeps IPv6 brackets and the port as written
    netloc = f"{parts.username}:***@{host}" if parts.username else f"***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def without_userinfo(uri: str) -> str:
    """The URI with no user or password: what to connect to, or to show as a link."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


# scheme://user:password@ as urlsplit reads it: the user ends at the first ":", the password at
# the last "@" before the authority ends (so an unencoded "@" or ":" in it is covered too)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s/?#@:]*):[^\s/?#]*@")
# shorter values would turn ordinary words and numbers in a message into ***
_MIN_SECRET = 4
_SECRETS: set[str] = set()  # passwords this process has used (check_reachable, Tracker)


def _forms(value: str | None) -> set[str]:
    """A secret as written, percent-decoded and percent-encoded (each long enough to replace)."""
    forms = {value, unquote(value)} if value else set()
    return {f for v in forms for f in (v, quote(v, safe="")) if len(f) >= _MIN_SECRET}


def _remember_secret(value: str | None) -> None:
    """Keep a password this process connects with, for :func:`redact_text`."""
    _SECRETS.update(_forms(value))


def _known_secrets() -> set[str]:
    """Passwords and tokens never to print: those used here and those in the environment."""
    try:
        uri_password = urlsplit(os.environ.get("MLFLOW_TRACKING_URI") or "").password
    except ValueError:  # malformed: its userinfo is still caught by the pattern
        uri_password = None
    found = set(_SECRETS)
    for value in (uri_password, os.environ.get("MLFLOW_TRACKING_PASSWORD"),
                  os.environ.get("MLFLOW_TRACKING_TOKEN")):
        found |= _forms(value)
    return found


def redact_text(text: str) -> str:
    """Any message with its secrets replaced by ***, safe to print, log or tag.

    Every ``scheme://user:password@host`` becomes ``scheme://user:***@host``; then the password
    of MLFLOW_TRACKING_URI, MLFLOW_TRACKING_PASSWORD, MLFLOW_TRACKING_TOKEN and every password
    this process has connected with are replaced wherever they appear, as written and
    percent-encoded (values under four characters only inside URIs).
    """
    out = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user'] + ':' if m['user'] else ''}***@",
                        text)
    for secret in sorted(_known_secrets(), key=len, reverse=True):
        out = out.replace(secret, "***")
    return out


def _file_credentials() -> tuple[str | None, str | None]:
    """~/.mlflow/credentials, which MLflow's client reads too (mlflow.utils.credentials)."""
    path = Path(os.path.expanduser("~/.mlflow/credentials"))
    if not path.is_file():
        return None, None
    config = configparser.ConfigParser()
    try:
        config.read(path)
    except (configparser.Error, OSError, UnicodeDecodeError):
        return None, None
    if "mlflow" not in config:
        return None, None
    section = config["mlflow"]
    return section.get("mlflow_tracking_username"), section.get("mlflow_tracking_password")


def _basic(user: str, password: str, encoding: str) -> str:
    try:
        raw = f"{user}:{password}".encode(encoding)
    except UnicodeEncodeError:
        raw = f"{user}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _authorization(uri: str) -> str | None:
    """The Authorization header MLflow's REST client would send for this URI.

    MLflow (mlflow.utils.rest_utils.http_request) sets basic auth when both
    MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or ~/.mlflow/credentials) are set,
    else a bearer MLFLOW_TRACKING_TOKEN; requests then replaces it with the URI's own
    user:password (percent-decoded, latin-1), so the URI wins.
    """
    parts = urlsplit(uri)
    if parts.username is not None and parts.password is not None:
        user, password = unquote(parts.username), unquote(parts.password)
        if user or password:
            _remember_secret(parts.password)
            return _basic(user, password, "latin-1")
    file_user, file_password = _file_credentials()
    user = os.environ.get("MLFLOW_TRACKING_USERNAME") or file_user
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD") or file_password
    if user and password:
        _remember_secret(password)
        return _basic(user, password, "utf-8")
    if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        _remember_secret(token)
        return f"Bearer {token}"
    return None


class _SameHostAuthRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but send the credentials only to the host they were given for.

    urllib copies every header to any redirect target; requests (MLflow's client) drops
    Authorization when the host changes, and so does this.
    """

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urlsplit(newurl).hostname != urlsplit(req.full_url).hostname:
            new.remove_header("Authorization")
        return new


def _http_status(url: str, auth: str | None, timeout: float) -> int:
    """The HTTP status of a GET (an HTTP error status is an answer, not an exception)."""
    req = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
    opener = urllib.request.build_opener(_SameHostAuthRedirects)
    try:
        with opener.open(req, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        err.close()
        return int(err.code)


def _check_http(uri: str, timeout: float) -> None:
    # urllib would resolve "user:password@host" as a host name (a DNS query carrying the
    # password, and a failed check against a server that is up): connect to the host
    # alone and send the user info as an Authorization header, as MLflow's client does
    base = without_userinfo(uri).rstrip("/")
    auth = _authorization(uri)
    shown = redact(uri)
    try:
        status = _http_status(base + "/health", auth, timeout)
        if status < 400:
            # MLflow's basic-auth app leaves /health open: only an API call tests the credentials
            status = _http_status(base + "/api/2.0/mlflow/experiments/search?max_results=1",
                                  auth, timeout)
            if status not in (401, 403):
                return
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        reason = redact_text(str(getattr(err, "reason", err)))
        raise TrackingError(f"MLflow tracking server {shown} unreachable: {reason}") from None
    if status in (401, 403):
        if os.environ.get("MLFLOW_TRACKING_AUTH") or os.environ.get("MLFLOW_TRACKING_AWS_SIGV4"):
            return  # MLflow signs its requests with a plugin this check cannot reproduce
        given = ("no credentials were given (user:password in the URI, or "
                 "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)" if auth is None
                 else "check the user and password")
        raise TrackingError(f"MLflow at {shown} refused the credentials (HTTP {status}): {given}")
    raise TrackingError(f"MLflow at {shown} answered HTTP {status}")


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, before any tuning, when the tracking store cannot be used."""
    try:
        parts = urlsplit(uri)
    except ValueError as err:  # an unclosed IPv6 bracket
        raise TrackingError(f"MLflow tracking URI {redact_text(uri)!r}: {err}") from None
    if parts.scheme in ("http", "https"):
        _check_http(uri, timeout)
        return
    if parts.scheme == "sqlite":
        path = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
        if path is not None and str(path) not in ("", ":memory:"):
            parent = path.resolve().parent
            if not parent.is_dir() or not os.access(parent, os.W_OK):
                raise TrackingError(f"MLflow store {uri}: folder {str(parent)!r} is not writable")
        return
    if parts.scheme in ("", "file"):
        return
    if parts.scheme in ("postgresql", "mysql", "mssql") or parts.scheme.startswith(
        ("postgresql+", "mysql+")
    ):
        return
    raise TrackingError(f"MLflow tracking URI {redact(uri)}: unsupported scheme {parts.scheme!r}")


def check_artifact_location(cfg: TrackingConfig) -> None:
    """A local artifact folder must be creatable and writable before the run starts."""
    loc = _artifact_location(cfg, resolve_tracking_uri(cfg))
    if loc is None or not loc.startswith("file://"):
        return
    folder = Path(urlsplit(loc).path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".paramaudit-probe-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise TrackingError(f"MLflow artifacts folder {str(folder)!r} is not writable: "
                            f"{err.strerror or err}") from None


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


def _artifact_location(cfg: TrackingConfig, uri: str) -> str | None:
    if cfg.artifact_location:
        loc = cfg.artifact_location
        return Path(loc).resolve().as_uri() if "://" not in loc else loc
    if is_local_store(uri):
        return Path(DEFAULT_ARTIFACTS).resolve().as_uri()
    return None  # a tracking server decides (proxied artifacts)


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
            _remember_secret(urlsplit(self.uri).password)
            # MLflow prints "View run ... at: <tracking URI>/#/..." at every run's end on a
            # tracking server, the URI with its password in it
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        self.experiment_name = experiment
        with _store_lock(self.uri):
            # the first client on a new sqlite store creates its tables; two pipelines starting
            # together would both try (and one fail with "table ... already exists")
            self.client = MlflowClient(tracking_uri=self.uri)
            self.experiment_id = self._ensure_experiment(_artifact_location(cfg, self.uri))

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

    def log_model(self, run_id: str, model: Any, example: Any,
                  registered_name: str | None = None) -> Any:
        """The trained torch model (mlflow.pytorch flavour, with signature) on the given run."""
        import mlflow
        import mlflow.pytorch
        import torch

        reqs = [f"torch=={torch.__version__.split('+')[0]}"]
        with _fluent_tracking_uri(self.uri):
            # created here so the model lands in this run's experiment: log_model alone would
            # file it under the fluent API's active (default) experiment
            logged = mlflow.initialize_logged_model(name="model", source_run_id=run_id,
                                                    experiment_id=self.experiment_id)
            return mlflow.pytorch.log_model(
                model, name="model", run_id=run_id, pip_requirements=reqs,
                model_id=logged.model_id, registered_model_name=registered_name,
                await_registration_for=0,
                # our own model object: pickle keeps any nn.Module loadable; pt2 needs tracing.
                # A signature, not an input example: MLflow validates an example by loading
                # the model back and predicting, which costs seconds per run
                serialization_format="pickle", signature=_signature(model, example),
            )

    def child_runs(self, parent_id: str) -> list[Any]:
        """Runs nested under a parent, oldest first."""
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}'",
            max_results=5000,
        )
        return sorted(runs, key=lambda r: r.info.start_time)


@contextmanager
def _fluent_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at ``uri`` for one call, then back to what it was.

    ``mlflow.pytorch.log_model`` has no client form; setting the URI for good would redirect
    whatever else the process logs (a user's own code, a second tracker).
    """
    import mlflow

    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]  # None: unset again


def _signature(model: Any, example: Any) -> Any:
    """The model's input/output signature from a few example rows."""
    if example is None:
        return None
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    with torch.no_grad():
        output = model(torch.as_tensor(np.asarray(example))).numpy()
    return infer_signature(np.asarray(example), output)


def scratch_dir(prefix: str = "paramaudit-") -> tempfile.TemporaryDirectory[str]:
    """A temporary folder for artifacts before they are logged."""
    return tempfile.TemporaryDirectory(prefix=prefix)


class WriteBehind:
    """MLflow writes done in order on one background thread; callers only queue them.

    Ray Tune calls its callbacks on its event loop, so a write made there (create a trial's run,
    log its record: 15-30 ms each on sqlite) is time every trial slot waits for. Queued, the
    loop goes on and the writes happen while it waits for the next result. ``flush`` waits until
    everything queued is written and raises the first write error: none is lost or hidden. After
    an error, later writes are dropped (they may depend on the failed one) and ``submit`` raises
    it too. The thread starts with the first write; a pickled copy (Ray Tune saves its
    callbacks with its state) is a new, empty writer.
    """

    def __init__(self, name: str = "paramaudit-mlflow-writer") -> None:
        self._name = name
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (WriteBehind, (self._name,))

    def _run(self) -> None:
        while (write := self._queue.get()) is not None:
            try:
                if self._error is None:
                    write()
            except BaseException as err:  # kept, and raised to the caller by flush/submit
                self._error = err
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, write: Callable[[], None]) -> None:
        """Queue one write (a call that takes no arguments)."""
        self._raise()
        if self._closed:
            raise RuntimeError("the MLflow writer is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        self._queue.put(write)

    def flush(self) -> None:
        """Wait until every queued write is done; raise the first one that failed."""
        self._queue.join()
        self._raise()

    def close(self) -> None:
        """Finish the queued writes and stop the thread (errors: ``flush`` raises them)."""
        self._closed = True
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
