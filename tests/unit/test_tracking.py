"""The MLflow wrapper against a real temporary sqlite store (no mocks)."""

from __future__ import annotations

import json
import pickle
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

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
    resolve_tracking_uri,
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
