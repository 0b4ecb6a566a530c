"""The MLflow wrapper against a real temporary sqlite store (no mocks)."""

from __future__ import annotations

import base64
import http.server
import ipaddress
import json
import pickle
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest

from paramaudit.config import TrackingConfig
from paramaudit.errors import TrackingError, UserInputError
from paramaudit.tracking import (
    DEFAULT_URI,
    PARENT_TAG,
    Tracker,
    WriteBehind,
    check_reachable,
    is_local_store,
    redact,
    redact_text,
    resolve_tracking_uri,
    without_userinfo,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingConfig]:
    """One sqlite store for the module: creating its tables takes seconds, so it is shared."""
    root = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        yield TrackingConfig(tracking_uri=f"sqlite:///{root}/mlflow.db",
                             artifact_location=str(root / "art"))


@pytest.fixture
def tracker(store: TrackingConfig, request: pytest.FixtureRequest,
            monkeypatch: pytest.MonkeyPatch) -> Tracker:
    """A tracker on its own experiment, named after the test."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    return Tracker(store, f"exp-{request.node.name}")


def artifact_dir(tracker: Tracker, run_id: str) -> Path:
    uri = tracker.client.get_run(run_id).info.artifact_uri
    assert uri.startswith("file:"), uri
    return Path(unquote(urlsplit(uri).path))


# --------------------------------------------------------------------------- experiment


def test_tracker_creates_the_experiment(store: TrackingConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    t = Tracker(store, "fresh-experiment")
    assert t.uri == store.tracking_uri
    exp = t.client.get_experiment_by_name("fresh-experiment")
    assert exp is not None and exp.experiment_id == t.experiment_id
    assert exp.artifact_location == Path(store.artifact_location or "").resolve().as_uri()
    # a second tracker on the same name reuses it
    assert Tracker(store, "fresh-experiment").experiment_id == t.experiment_id


def test_deleted_experiment_is_a_tracking_error(tracker: Tracker, store: TrackingConfig) -> None:
    tracker.client.delete_experiment(tracker.experiment_id)
    with pytest.raises(TrackingError) as info:
        Tracker(store, tracker.experiment_name)
    assert tracker.experiment_name in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- runs


def test_start_run_and_child(tracker: Tracker) -> None:
    parent = tracker.start_run("parent", {"kind": "pipeline"})
    child = tracker.start_run("trial-0", {"kind": "trial"}, parent_id=parent)
    p, c = tracker.client.get_run(parent), tracker.client.get_run(child)
    assert p.info.experiment_id == c.info.experiment_id == tracker.experiment_id
    assert p.info.run_name == "parent" and c.info.run_name == "trial-0"
    assert p.info.status == "RUNNING" == tracker.status(child)
    assert c.data.tags[PARENT_TAG] == parent
    assert c.data.tags["kind"] == "trial"
    assert PARENT_TAG not in p.data.tags
    tracker.end_run(child)
    tracker.end_run(parent, "KILLED")
    assert tracker.status(child) == "FINISHED"
    assert tracker.status(parent) == "KILLED"


def test_log_params(tracker: Tracker) -> None:
    run = tracker.start_run("params")
    params = {f"p{i}": i for i in range(150)}  # more than one batch of 100
    params.update({"lr": 0.001, "space": {"choice": [1, 2]}, "layers": [3, 4], "name": "adam"})
    tracker.log_params(run, params)
    logged = tracker.client.get_run(run).data.params
    assert len(logged) == len(params)
    assert logged["p149"] == "149"
    assert logged["lr"] == "0.001"
    assert json.loads(logged["space"]) == {"choice": [1, 2]}
    assert json.loads(logged["layers"]) == [3, 4]
    assert logged["name"] == "adam"


def test_log_metrics_skips_non_finite(tracker: Tracker) -> None:
    run = tracker.start_run("metrics")
    tracker.log_metrics(run, {"acc": 0.9, "loss": float("nan"), "big": float("inf"),
                              "neg": float("-inf"), "text": "n/a", "none": None, "count": 7})
    metrics = tracker.client.get_run(run).data.metrics
    assert metrics == {"acc": 0.9, "count": 7.0}


def test_log_metrics_steps(tracker: Tracker) -> None:
    run = tracker.start_run("steps")
    for step, loss in enumerate([1.0, 0.5, 0.25]):
        tracker.log_metrics(run, {"loss": loss}, step=step)
    history = tracker.client.get_metric_history(run, "loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 1.0), (1, 0.5), (2, 0.25)]


def test_log_record_writes_history_summary_and_tags_together(tracker: Tracker) -> None:
    run = tracker.start_run("record")
    epochs = 300  # 2 metrics x 300 steps + summary + 150 tags: more than one MLflow batch holds
    steps = [({"loss": 1.0 / (e + 1), "acc": float("nan") if e == 5 else e / epochs}, e + 1)
             for e in range(epochs)]
    tags = {f"t{i}": i for i in range(150)}
    tracker.log_record(run, [*steps, ({"best": 0.5, "text": "n/a"}, 0)], tags)
    data = tracker.client.get_run(run).data
    assert data.metrics["best"] == 0.5 and "text" not in data.metrics
    assert {k: v for k, v in data.tags.items() if k.startswith("t")} == {
        f"t{i}": str(i) for i in range(150)}
    loss = tracker.client.get_metric_history(run, "loss")
    assert sorted(m.step for m in loss) == list(range(1, epochs + 1))
    acc = tracker.client.get_metric_history(run, "acc")
    assert len(acc) == epochs - 1  # the NaN step is skipped, the rest kept


def test_log_record_cut_short_never_carries_the_tags(tracker: Tracker,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    run = tracker.start_run("cut")
    steps = [({f"m{i}": 0.1 * i for i in range(4)}, e + 1) for e in range(300)]  # 1,200 values
    calls: list[int] = []
    log_batch = tracker.client.log_batch

    def failing_second(run_id: str, **kwargs: Any) -> None:
        calls.append(len(kwargs.get("tags") or []))
        if len(calls) == 2:
            raise OSError("No space left on device")
        log_batch(run_id, **kwargs)

    monkeypatch.setattr(tracker.client, "log_batch", failing_second)
    with pytest.raises(OSError):
        tracker.log_record(run, steps, {"trial_status": "TERMINATED"})
    assert calls == [0, 1]  # metrics first; the tags only with the last values
    assert "trial_status" not in tracker.client.get_run(run).data.tags


def test_write_behind_runs_writes_in_order_off_the_caller_thread() -> None:
    done: list[tuple[int, str]] = []
    writer = WriteBehind()
    for i in range(50):
        writer.submit(lambda i=i: done.append((i, threading.current_thread().name)))
    writer.flush()
    assert [i for i, _ in done] == list(range(50))
    assert {name for _, name in done} == {"paramaudit-mlflow-writer"}
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit(lambda: None)


def test_write_behind_raises_the_first_error_and_drops_later_writes() -> None:
    done: list[int] = []
    writer = WriteBehind()
    writer.submit(lambda: done.append(1))

    def broken() -> None:
        raise OSError("store is gone")

    writer.submit(broken)
    writer.submit(lambda: done.append(3))  # depends on the failed write: never runs
    with pytest.raises(OSError, match="store is gone"):
        writer.flush()
    assert done == [1]
    with pytest.raises(OSError, match="store is gone"):
        writer.submit(lambda: done.append(4))
    writer.close()  # stops the thread; the error was already raised by flush
    assert done == [1]


def test_write_behind_pickles_as_a_new_idle_writer() -> None:
    writer = WriteBehind()
    writer.submit(lambda: None)
    copy = pickle.loads(pickle.dumps(writer))  # Ray Tune pickles its callbacks with its state
    assert isinstance(copy, WriteBehind)
    before = threading.active_count()
    copy.flush()
    copy.close()
    assert threading.active_count() == before  # no thread until a first write
    writer.close()


def test_set_tags(tracker: Tracker) -> None:
    run = tracker.start_run("tags")
    tracker.set_tags(run, {"verdict": "ok", "n": 3, "long": "x" * 6000})
    tracker.set_tags(run, {})  # nothing to log is fine
    tags = tracker.client.get_run(run).data.tags
    assert tags["verdict"] == "ok" and tags["n"] == "3"
    assert tags["long"] == "x" * 5000


def test_log_dict_and_text(tracker: Tracker, store: TrackingConfig) -> None:
    run = tracker.start_run("artifacts")
    tracker.log_dict(run, {"a": 1, "b": [1, 2]}, "summary.json")
    tracker.log_text(run, "# report\n", "report/report.md")
    names = {f.path for f in tracker.client.list_artifacts(run)}
    assert names == {"summary.json", "report"}
    where = artifact_dir(tracker, run)
    assert Path(store.artifact_location or "").resolve() in where.parents
    assert json.loads((where / "summary.json").read_text()) == {"a": 1, "b": [1, 2]}
    assert (where / "report" / "report.md").read_text() == "# report\n"


def test_log_file(tracker: Tracker, tmp_path: Path) -> None:
    run = tracker.start_run("file")
    f = tmp_path / "layers.csv"
    f.write_text("name,params\nfc1,23\n")
    tracker.log_file(run, f, "tables")
    assert (artifact_dir(tracker, run) / "tables" / "layers.csv").read_text() == f.read_text()


# --------------------------------------------------------------------------- parent_run


def test_parent_run_finished_on_success(tracker: Tracker) -> None:
    with tracker.parent_run("ok", {"stage": "all"}) as run:
        assert tracker.status(run) == "RUNNING"
    r = tracker.client.get_run(run)
    assert r.info.status == "FINISHED"
    assert r.data.tags["stage"] == "all"
    assert "error" not in r.data.tags
    assert r.info.end_time is not None


def test_parent_run_failed_with_error_tag(tracker: Tracker) -> None:
    with pytest.raises(ValueError, match="boom"), tracker.parent_run("bad", {}) as run:
        raise ValueError("boom")
    r = tracker.client.get_run(run)
    assert r.info.status == "FAILED"
    assert r.data.tags["error"] == "ValueError: boom"


def test_parent_run_killed_on_keyboard_interrupt(tracker: Tracker) -> None:
    with pytest.raises(KeyboardInterrupt), tracker.parent_run("ctrl-c", {}) as run:
        raise KeyboardInterrupt
    r = tracker.client.get_run(run)
    assert r.info.status == "KILLED"
    assert "error" in r.data.tags


def test_parent_run_killed_when_a_stop_surfaces_as_an_error(
        tracker: Tracker, monkeypatch: pytest.MonkeyPatch) -> None:
    """A library that wraps the KeyboardInterrupt it caught: once a stop was asked, KILLED."""
    from paramaudit import stopping

    monkeypatch.setattr(stopping._S, "requested_at", time.monotonic())
    with pytest.raises(RuntimeError), tracker.parent_run("wrapped", {}) as run:
        raise RuntimeError("interrupted while writing")
    assert tracker.client.get_run(run).info.status == "KILLED"


def test_log_model_leaves_the_fluent_tracking_uri_as_it_was(
        tracker: Tracker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """log_model points MLflow's fluent API at the tracker's store for the call only."""
    import mlflow
    import numpy as np
    import pandas as pd
    import torch

    from paramaudit.data.inputs import numeric_inputs
    from paramaudit.data.preprocessor import fit_preprocessor
    from paramaudit.serving.predictor import Predictor

    predictor = Predictor(numeric_inputs(["a", "b"]), None,
                          fit_preprocessor(np.eye(2, dtype=np.float32), "none", None),
                          torch.nn.Linear(2, 2), classes=["no", "yes"])

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    elsewhere = (tmp_path / "elsewhere").as_uri()
    mlflow.set_tracking_uri(elsewhere)
    try:
        with tracker.parent_run("model", {}) as run:
            info = tracker.log_model(run, predictor, pd.DataFrame({"a": [1.0], "b": [0.0]}))
        assert mlflow.get_tracking_uri() == elsewhere
        assert info.run_id == run  # and the model went to the tracker's own store
        assert tracker.client.get_logged_model(info.model_id).source_run_id == run
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    assert not mlflow.is_tracking_uri_set()


def test_child_runs_lists_nested_runs(tracker: Tracker) -> None:
    with tracker.parent_run("parent", {}) as parent:
        kids = []
        for i in range(3):
            kids.append(tracker.start_run(f"trial-{i}", parent_id=parent))
            time.sleep(0.01)  # distinct start times, so "oldest first" is well defined
        other = tracker.start_run("unrelated")
        with tracker.parent_run("other-parent", {}) as other_parent:
            tracker.start_run("foreign-child", parent_id=other_parent)
    found = tracker.child_runs(parent)
    assert [r.info.run_id for r in found] == kids
    assert [r.info.run_name for r in found] == ["trial-0", "trial-1", "trial-2"]
    assert other not in {r.info.run_id for r in found}
    assert [r.info.run_name for r in tracker.child_runs(other_parent)] == ["foreign-child"]


# --------------------------------------------------------------------------- URIs


def test_redact_hides_password() -> None:
    out = redact("http://user:secret@host:5000")
    assert "secret" not in out
    assert out == "http://user:***@host:5000"
    assert redact("https://user:s3cr3t@mlflow.example.com/path?x=1") == (
        "https://user:***@mlflow.example.com/path?x=1"
    )


def test_redact_token_without_user() -> None:
    out = redact("https://:token123@host")
    assert "token123" not in out and "host" in out


@pytest.mark.parametrize(
    "uri",
    ["http://host:5000", "http://user@host:5000", "sqlite:///mlflow.db", "file:///tmp/mlruns",
     "databricks", "postgresql://db/mlflow"],
)
def test_redact_leaves_others_alone(uri: str) -> None:
    assert redact(uri) == uri


def test_redact_keeps_ipv6_brackets() -> None:
    # BUG (tracking.py redact): the host is rebuilt from parts.hostname, which drops the
    # brackets of an IPv6 literal, giving the invalid "http://user:***@::1:5000".
    assert redact("http://user:secret@[::1]:5000/") == "http://user:***@[::1]:5000/"


def test_check_reachable_http_nothing_listening() -> None:
    start = time.monotonic()
    with pytest.raises(TrackingError) as info:
        check_reachable("http://127.0.0.1:9", timeout=3)
    assert time.monotonic() - start < 3
    msg = str(info.value)
    assert "http://127.0.0.1:9" in msg and "\n" not in msg


def test_check_reachable_http_error_is_redacted() -> None:
    with pytest.raises(TrackingError) as info:
        check_reachable("http://me:hunter2@127.0.0.1:9", timeout=3)
    assert "hunter2" not in str(info.value) and "127.0.0.1:9" in str(info.value)


def test_check_reachable_sqlite_missing_folder(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/does/not/exist/mlflow.db"
    with pytest.raises(TrackingError) as info:
        check_reachable(uri)
    msg = str(info.value)
    assert uri in msg and "\n" not in msg
    assert str(tmp_path / "does" / "not" / "exist") in msg


def test_check_reachable_sqlite_folder_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "plain-file"
    blocker.write_text("")
    uri = f"sqlite:///{blocker}/mlflow.db"
    with pytest.raises(TrackingError) as info:
        check_reachable(uri)
    assert uri in str(info.value)


def test_check_reachable_local_stores_ok(tmp_path: Path) -> None:
    check_reachable(f"sqlite:///{tmp_path}/mlflow.db")
    check_reachable("sqlite:///:memory:")
    check_reachable(tmp_path.as_uri())
    check_reachable(str(tmp_path))
    check_reachable("postgresql://user:pw@db:5432/mlflow")
    assert not (tmp_path / "mlflow.db").exists()  # checking creates nothing


def test_check_reachable_unsupported_scheme() -> None:
    with pytest.raises(TrackingError) as info:
        check_reachable("ftp://user:pw@host/store")
    assert "ftp" in str(info.value) and "pw@" not in str(info.value)


def test_tracking_error_is_user_input_error() -> None:
    with pytest.raises(UserInputError):
        check_reachable("gopher://x")


def test_resolve_tracking_uri_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env-host:5000")
    assert resolve_tracking_uri(TrackingConfig(tracking_uri="sqlite:///cfg.db")) == "sqlite:///cfg.db"
    assert resolve_tracking_uri(TrackingConfig()) == "http://env-host:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert resolve_tracking_uri(TrackingConfig()) == DEFAULT_URI == "sqlite:///mlflow.db"


def test_resolve_tracking_uri_empty_env_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    assert resolve_tracking_uri(TrackingConfig()) == DEFAULT_URI


@pytest.mark.parametrize(
    ("uri", "local"),
    [("sqlite:///x.db", True), ("file:///tmp/m", True), ("/tmp/mlruns", True), ("C:\\mlruns", True),
     ("http://h:5000", False), ("databricks://p", False), ("postgresql://db/m", False)],
)
def test_is_local_store(uri: str, local: bool) -> None:
    assert is_local_store(uri) is local


# --------------------------------------------------------------------------- credentials
# A real HTTP server on 127.0.0.1 that wants basic auth, and a resolver that records every lookup
# and refuses any name that is not a loopback literal: a password must never reach a resolver.

USER = "alice"
PASSWORD = "s3cr:t@pw"  # ":" and "@": percent-encoded in a URI, as a user must write it
URI_PASSWORD = quote(PASSWORD, safe="")
API_PROBE = "/api/2.0/mlflow/experiments/search"
_CREDENTIAL_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                   "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_AWS_SIGV4",
                   "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                   "ALL_PROXY")


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class _AuthServer(http.server.HTTPServer):
    """Answers only requests with the right basic-auth credentials (401 otherwise).

    With ``open_health`` it leaves /health open, as MLflow's basic-auth app does.
    ``answers`` holds JSON bodies by path for the MLflow client's own requests.
    """

    def __init__(self, open_health: bool) -> None:
        self.open_health = open_health
        self.expected = _basic(USER, PASSWORD)
        self.seen: list[tuple[str, str | None]] = []
        self.answers: dict[str, Any] = {API_PROBE: {"experiments": []}}
        super().__init__(("127.0.0.1", 0), _AuthHandler)

    def server_bind(self) -> None:
        # HTTPServer's own server_bind looks its host name up (socket.getfqdn): not needed
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class _AuthHandler(http.server.BaseHTTPRequestHandler):
    server: _AuthServer

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?")[0]
        auth = self.headers.get("Authorization")
        self.server.seen.append((path, auth))
        if not (self.server.open_health and path == "/health") and auth != self.server.expected:
            code, body = 401, b"You are not authenticated."
        elif path == "/health":
            code, body = 200, b"OK"
        elif path in self.server.answers:
            code, body = 200, json.dumps(self.server.answers[path]).encode()
        else:
            code, body = 404, b'{"error_code": "ENDPOINT_NOT_FOUND"}'
        self.send_response(code)
        if code == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="mlflow"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No credentials, proxies or ~/.mlflow/credentials from the machine running the tests."""
    for name in _CREDENTIAL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return monkeypatch


@pytest.fixture
def auth_server(clean_env: pytest.MonkeyPatch) -> Iterator[Callable[..., _AuthServer]]:
    """Start servers (each on its own free port, in a thread); all stop at the end."""
    started: list[_AuthServer] = []

    def start(open_health: bool = False) -> _AuthServer:
        srv = _AuthServer(open_health)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every host name passed to socket.getaddrinfo; anything but a loopback literal is refused."""
    seen: list[str] = []
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        seen.append(name)
        try:
            loopback = ipaddress.ip_address(name.strip("[]")).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise socket.gaierror(socket.EAI_NONAME, f"lookup of {name!r} refused by the test")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    return seen


def assert_no_secret_looked_up(lookups: list[str], *secrets: str) -> None:
    assert lookups, "the check made no lookup at all: the guard saw nothing"
    for host in lookups:
        assert "@" not in host, host
        for secret in (PASSWORD, URI_PASSWORD, *secrets):
            assert secret not in host, host


def assert_clean_one_line(msg: str, *secrets: str) -> None:
    assert "\n" not in msg, msg
    for secret in (PASSWORD, URI_PASSWORD, *secrets):
        assert secret not in msg, msg


def _with_userinfo(url: str, user: str, password: str) -> str:
    return url.replace("http://", f"http://{user}:{password}@")


@pytest.mark.parametrize("open_health", [False, True], ids=["all-protected", "health-open"])
def test_check_reachable_credentials_in_the_uri_pass(
        auth_server: Callable[..., _AuthServer], lookups: list[str], open_health: bool) -> None:
    srv = auth_server(open_health)
    check_reachable(_with_userinfo(srv.url, USER, URI_PASSWORD), timeout=3)
    # decoded and sent as basic auth, to the API as well as to /health
    assert srv.seen == [("/health", srv.expected), (API_PROBE, srv.expected)]
    assert_no_secret_looked_up(lookups)
    assert set(lookups) == {"127.0.0.1"}


def test_check_reachable_credentials_from_the_environment_pass(
        auth_server: Callable[..., _AuthServer], lookups: list[str],
        clean_env: pytest.MonkeyPatch) -> None:
    srv = auth_server()
    clean_env.setenv("MLFLOW_TRACKING_USERNAME", USER)
    clean_env.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)  # as written, not encoded
    check_reachable(srv.url, timeout=3)
    assert [auth for _, auth in srv.seen] == [srv.expected, srv.expected]
    assert_no_secret_looked_up(lookups)


def test_check_reachable_credentials_file_like_mlflow(
        auth_server: Callable[..., _AuthServer], lookups: list[str], tmp_path: Path) -> None:
    srv = auth_server()
    (tmp_path / ".mlflow").mkdir()
    (tmp_path / ".mlflow" / "credentials").write_text(
        f"[mlflow]\nmlflow_tracking_username = {USER}\nmlflow_tracking_password = {PASSWORD}\n")
    check_reachable(srv.url, timeout=3)  # HOME is tmp_path (clean_env)
    assert_no_secret_looked_up(lookups)


def test_check_reachable_uri_credentials_win_over_the_environment(
        auth_server: Callable[..., _AuthServer], lookups: list[str],
        clean_env: pytest.MonkeyPatch) -> None:
    srv = auth_server()
    clean_env.setenv("MLFLOW_TRACKING_USERNAME", USER)
    clean_env.setenv("MLFLOW_TRACKING_PASSWORD", "env-wrong-pw")
    check_reachable(_with_userinfo(srv.url, USER, URI_PASSWORD), timeout=3)
    clean_env.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    with pytest.raises(TrackingError, match="refused"):
        check_reachable(_with_userinfo(srv.url, USER, "uri-wrong-pw"), timeout=3)
    assert_no_secret_looked_up(lookups, "env-wrong-pw", "uri-wrong-pw")


@pytest.mark.parametrize("open_health", [False, True], ids=["all-protected", "health-open"])
def test_check_reachable_wrong_credentials_are_refused(
        auth_server: Callable[..., _AuthServer], lookups: list[str], open_health: bool) -> None:
    srv = auth_server(open_health)
    wrong = "not-" + URI_PASSWORD
    with pytest.raises(TrackingError) as info:
        check_reachable(_with_userinfo(srv.url, USER, wrong), timeout=3)
    msg = str(info.value)
    assert "refused the credentials" in msg and "HTTP 401" in msg
    assert f"http://{USER}:***@127.0.0.1:{srv.server_port}" in msg  # the redacted URI
    assert_clean_one_line(msg, wrong, unquote(wrong))
    assert_no_secret_looked_up(lookups, wrong)


def test_check_reachable_no_credentials_are_refused(
        auth_server: Callable[..., _AuthServer], lookups: list[str]) -> None:
    srv = auth_server()
    with pytest.raises(TrackingError) as info:
        check_reachable(srv.url, timeout=3)
    msg = str(info.value)
    assert "refused" in msg and "no credentials were given" in msg and srv.url in msg
    assert "\n" not in msg
    assert srv.seen == [("/health", None)]


def test_check_reachable_server_down_is_unreachable_without_the_password(
        auth_server: Callable[..., _AuthServer], lookups: list[str]) -> None:
    srv = auth_server()
    srv.shutdown()
    srv.server_close()  # the port is free again: nothing listens there now
    uri = _with_userinfo(srv.url, USER, URI_PASSWORD)
    with pytest.raises(TrackingError) as info:
        check_reachable(uri, timeout=3)
    msg = str(info.value)
    assert "unreachable" in msg and f"{USER}:***@127.0.0.1:{srv.server_port}" in msg
    assert_clean_one_line(msg)
    assert_no_secret_looked_up(lookups)


@pytest.mark.parametrize("refuse", ["names", "everything"])
def test_check_reachable_error_is_redacted_whatever_the_resolver_does(
        monkeypatch: pytest.MonkeyPatch, clean_env: pytest.MonkeyPatch, refuse: str) -> None:
    # where lookups are refused, the resolver's error named the "host" it was given: the password
    looked: list[str] = []
    real = socket.getaddrinfo

    def resolver(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked.append(str(host))
        if refuse == "everything" or not str(host)[:1].isdigit():
            raise socket.gaierror(socket.EAI_AGAIN, f"Temporary failure in name resolution: {host}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    with pytest.raises(TrackingError) as info:
        check_reachable("http://me:hunter2@127.0.0.1:9", timeout=3)
    msg = str(info.value)
    assert "hunter2" not in msg and "me:***@127.0.0.1:9" in msg and "unreachable" in msg
    assert looked == ["127.0.0.1"]


def test_mlflow_client_sends_uri_credentials_as_basic_auth(
        auth_server: Callable[..., _AuthServer], lookups: list[str]) -> None:
    # MLflow hands the whole URI to requests, which sends the user info as basic auth and
    # connects to the host alone: the same contract check_reachable now keeps
    from mlflow import MlflowClient

    srv = auth_server()
    assert MlflowClient(tracking_uri=_with_userinfo(srv.url, USER, URI_PASSWORD)
                        ).search_experiments() == []
    assert srv.seen == [(API_PROBE, srv.expected)]
    assert_no_secret_looked_up(lookups)


def test_tracker_with_uri_credentials_prints_no_password(
        auth_server: Callable[..., _AuthServer], lookups: list[str],
        clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    srv = auth_server()
    srv.answers.update({
        "/api/2.0/mlflow/experiments/get-by-name": {"experiment": {
            "experiment_id": "1", "name": "creds", "lifecycle_stage": "active"}},
        "/api/2.0/mlflow/runs/get": {"run": {"info": {
            "run_id": "r1", "experiment_id": "1", "run_name": "n", "status": "RUNNING",
            "lifecycle_stage": "active"}, "data": {}}},
        "/api/2.0/mlflow/runs/update": {"run_info": {
            "run_id": "r1", "experiment_id": "1", "status": "FINISHED",
            "lifecycle_stage": "active"}},
    })
    # MLflow prints "View run ... at: <tracking URI>/#/..." when a run ends; restored afterwards
    clean_env.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "false")
    t = Tracker(TrackingConfig(tracking_uri=_with_userinfo(srv.url, USER, URI_PASSWORD)), "creds")
    assert t.experiment_id == "1"
    t.end_run("r1")
    out = capsys.readouterr()
    assert_clean_one_line(out.out + out.err)
    assert ("/api/2.0/mlflow/runs/update", srv.expected) in srv.seen
    assert_no_secret_looked_up(lookups)


# --------------------------------------------------------------------------- redact_text


def test_redact_text_inside_a_longer_message() -> None:
    msg = ("MlflowException: API request to http://alice:pw1234@127.0.0.1:5000/api/2.0/mlflow/"
           "runs/get failed with exception HTTPConnectionPool(host='127.0.0.1', port=5000)")
    assert redact_text(msg) == msg.replace("alice:pw1234@", "alice:***@")


def test_redact_text_several_uris() -> None:
    msg = ("tried https://bob:one-pw@a.example:443/x, then postgresql+psycopg://db:two-pw@db/m "
           "and http://:token-three@h; none answered")
    out = redact_text(msg)
    assert out == ("tried https://bob:***@a.example:443/x, then postgresql+psycopg://db:***@db/m "
                   "and http://***@h; none answered")


@pytest.mark.parametrize("text", [
    "http://alice@host:5000/x", "http://host:5000", "sqlite:///mlflow.db", "mail alice@example.com",
    "ratio 3:4@x", "file:///tmp/a:b/c@d", "", "no URI at all",
])
def test_redact_text_leaves_text_without_a_password_alone(text: str,
                                                           clean_env: pytest.MonkeyPatch) -> None:
    assert redact_text(text) == text


def test_redact_text_environment_password_anywhere(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MLFLOW_TRACKING_PASSWORD", "p@ss word!")
    msg = "login as alice with p@ss word! failed (sent p%40ss%20word%21)"
    assert redact_text(msg) == "login as alice with *** failed (sent ***)"


def test_redact_text_password_of_the_tracking_uri_anywhere(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MLFLOW_TRACKING_URI", f"http://{USER}:{URI_PASSWORD}@mlflow.internal:5000")
    out = redact_text(f"bad credentials {PASSWORD!r} (encoded {URI_PASSWORD})")
    assert out == "bad credentials '***' (encoded ***)"


def test_redact_text_short_password_only_inside_uris(clean_env: pytest.MonkeyPatch) -> None:
    # a three-letter password replaced everywhere would blank out ordinary words
    clean_env.setenv("MLFLOW_TRACKING_PASSWORD", "the")
    assert redact_text("the run at http://u:the@h failed") == "the run at http://u:***@h failed"


def test_redact_text_ipv6_host() -> None:
    assert redact_text("at http://u:pw99@[::1]:5000/api: refused") == (
        "at http://u:***@[::1]:5000/api: refused")


@pytest.mark.parametrize("uri", [
    "http://u:p%40ss%3Aword@host:5000/x",   # "@" and ":" percent-encoded
    "http://u:p@ss:word@host:5000/x",       # written raw: urlsplit also ends it at the last "@"
])
def test_redact_text_password_containing_at(uri: str) -> None:
    out = redact_text(f"error: {uri} down")
    assert out == "error: http://u:***@host:5000/x down"
    assert "ss" not in out.replace("host", "")
    assert redact_text(uri) == redact(uri)  # the same answer as for a single URI


def test_redact_text_is_idempotent() -> None:
    once = redact_text("see http://alice:pw1234@h:1/ and https://:tok1234@g")
    assert redact_text(once) == once


def test_without_userinfo() -> None:
    assert without_userinfo("http://alice:pw@[::1]:5000/x") == "http://[::1]:5000/x"
    assert without_userinfo("https://alice@h/x") == "https://h/x"
    assert without_userinfo("http://h:5000") == "http://h:5000"


# --------------------------------------------------------------------------- messages


def _mlflow_connection_error(clean_env: pytest.MonkeyPatch) -> Exception:
    """MLflow's own error for a server that is down: it names the URI, password and all."""
    from mlflow import MlflowClient

    clean_env.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    try:
        MlflowClient(tracking_uri=f"http://{USER}:{URI_PASSWORD}@127.0.0.1:{port}"
                     ).search_experiments()
    except Exception as err:
        assert URI_PASSWORD in str(err)  # what there is to redact
        return err
    raise AssertionError("a closed port answered")


def test_cli_error_line_is_redacted(clean_env: pytest.MonkeyPatch) -> None:
    from paramaudit.app.cli import _one_line

    line = _one_line(_mlflow_connection_error(clean_env))
    assert f"http://{USER}:***@127.0.0.1:" in line
    assert_clean_one_line(line)


def test_parent_run_error_tag_is_redacted(tracker: Tracker, clean_env: pytest.MonkeyPatch) -> None:
    err = _mlflow_connection_error(clean_env)
    with pytest.raises(type(err)), tracker.parent_run("down", {}) as run:
        raise err
    tag = tracker.client.get_run(run).data.tags["error"]
    assert tag.startswith("MlflowException: API request to http://alice:***@127.0.0.1:")
    assert_clean_one_line(tag)


def test_trial_error_is_redacted(tmp_path: Path) -> None:
    from paramaudit.search.trial_log import trial_error

    error_file = tmp_path / "error.txt"
    error_file.write_text(f"Traceback ...\nRuntimeError: cannot log to "
                          f"http://{USER}:{URI_PASSWORD}@10.0.0.5:5000/api\n")
    trial = SimpleNamespace(pickled_error_file=None, error_file=str(error_file))
    assert trial_error(trial) == f"RuntimeError: cannot log to http://{USER}:***@10.0.0.5:5000/api"
