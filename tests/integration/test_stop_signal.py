"""A stop signal ends `paramaudit run` within 10 s at any stage: exit 130, one line, runs KILLED.

Keyed on the progress lines the run prints, so each case lands where it means to on a fast or a
slow machine. test_reliability.py's mid-search SIGTERM (trials running, a bigger search) stays
there; these cover the stages around it.
"""

from __future__ import annotations

import inspect
import os
import re
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import cli_env, paramaudit_cmd
from support import servers as srv

from paramaudit.search import ray_internals

pytestmark = pytest.mark.integration

MARK = "PARAMAUDIT_TEST_STOP_MARK"  # every process the run starts inherits it
BUDGET_S = 10.0


def _statuses(db: Path) -> list[str]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db) as con:
            return [s for (s,) in con.execute("select status from runs")]
    except sqlite3.OperationalError:
        return []  # stopped before MLflow created its tables


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has its own SIGTERM handler yet (the SigCgt mask of /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(mask, 16) >> (signal.SIGTERM - 1) & 1)


# (what to wait for on stdout or stderr, then seconds, the signal, a second one this much after);
# None: until the CLI has put its handler on. A signal before that (the interpreter still
# importing) ends the process the default way, as it would any program; on a loaded machine a
# fixed 0.3 s after the start was sometimes before it (CI: exit -15).
STAGES = {
    "input-checks": (None, 0.05, signal.SIGTERM, None),
    "ray-starting": (r"^paramaudit: .* search", 0.3, signal.SIGINT, None),
    "search-starting": (r"  ray: ", 0.0, signal.SIGTERM, None),
    "publishing": (r"\[4/6\] audit", 0.0, signal.SIGTERM, None),
    # Ctrl-C twice, after the search: Tune's handler used to take it and nothing stopped
    "publishing-ctrl-c-twice": (r"\[4/6\] audit", 0.0, signal.SIGINT, 0.3),
}
# what a stop used to print (Prefect's crash report, Tune's stop notice, tracebacks); a run
# prints none of it before the stop
NOISE = ("Traceback", "KeyboardInterrupt", "Exception ignored", "ERROR", "Crash",
         "Stop signal received", "has been interrupted")


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_stop_ends_the_run_in_time_with_its_runs_killed(tmp_path: Path, stage: str) -> None:
    pattern, delay, sig, second = STAGES[stage]
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({
        "smoke": True, "data": {"dataset": "iris"}, "search": {"max_concurrent": 2}}))
    mark = uuid.uuid4().hex
    proc = subprocess.Popen(paramaudit_cmd() + ["run", "--config", "cfg.yaml"], cwd=tmp_path,
                            env=cli_env(tmp_path, **{MARK: mark}), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen = threading.Event()
    err: list[str] = []

    def read(stream, keep: list[str] | None) -> None:
        for line in stream:
            if keep is not None:
                keep.append(line)
            if pattern and re.search(pattern, line):
                seen.set()

    readers = [threading.Thread(target=read, args=(proc.stdout, None), daemon=True),
               threading.Thread(target=read, args=(proc.stderr, err), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        if pattern:
            assert seen.wait(180), f"never printed {pattern!r}: {''.join(err)[-2000:]}"
        else:
            until = time.monotonic() + 60
            while not _catches_sigterm(proc.pid) and time.monotonic() < until:
                time.sleep(0.01)
            assert _catches_sigterm(proc.pid), f"no SIGTERM handler: {''.join(err)[-2000:]}"
        time.sleep(delay)
        assert proc.poll() is None, f"ended before the stop: {''.join(err)[-2000:]}"
        sent = time.monotonic()
        proc.send_signal(sig)
        if second is not None:
            time.sleep(second)
            proc.send_signal(sig)
        proc.wait(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for reader in readers:
        reader.join(5)
    left = [cmd[:120] for cmd in srv.with_environment(f"{MARK}={mark}").values()]
    stderr = "".join(err)
    assert took < BUDGET_S, f"{took:.1f} s to stop"
    assert proc.returncode == 130, stderr[-3000:]
    assert stderr.endswith("paramaudit: interrupted\n") and stderr.count("interrupted\n") == 1
    for noise in NOISE:
        assert noise not in stderr, stderr[-3000:]
    statuses = _statuses(tmp_path / "mlflow.db")
    assert "RUNNING" not in statuses, statuses
    if stage not in ("input-checks", "ray-starting"):  # the flow had opened its parent run
        assert "KILLED" in statuses
    assert left == [], left
    # nothing left in the run's process group either, within the same budget from the signal:
    # a process of the group may still be between its last instruction and the kernel reaping
    # it when the main process has already exited
    deadline = sent + BUDGET_S
    while True:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, _group(proc.pid)
        time.sleep(0.1)


def _group(pgid: int) -> list[str]:
    """The command lines of the processes still in process group ``pgid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found.append(f"{stat.parent.name} {fields[0]} {cmd[:120]}")
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_the_library_internals_the_stop_relies_on_are_still_there() -> None:
    """The three handlers paramaudit.stopping works around, as the installed versions have them."""
    import ray._private.ray_constants
    import ray._private.utils
    import ray._private.worker
    from prefect import flow_engine
    from prefect.utilities import engine as prefect_engine
    from ray.tune import tune as tune_module

    # ray.init installs a sys.exit handler through this function, and the driver's C++ crash
    # handler unless this is set (search.ray_internals.ray_keeps_sigterm_handler)
    assert callable(ray._private.utils.set_sigterm_handler)
    assert "ray._private.utils.set_sigterm_handler(" in inspect.getsource(ray._private.worker.init)
    assert ray._private.ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER in (False, True)
    # Prefect's flow engine puts its SIGTERM bridge on through this name (cli._sigterm_left_to_the_cli)
    assert flow_engine.capture_sigterm is prefect_engine.capture_sigterm
    assert "capture_sigterm()" in inspect.getsource(flow_engine.FlowRunEngine.initialize_run)
    # Tune's stop handler: on SIGUSR1 even with its SIGINT handler off (stopping._tune_stop)
    setup = inspect.getsource(tune_module._setup_signal_catching)
    assert "TUNE_DISABLE_SIGINT_HANDLER" in setup and "signal.SIGUSR1" in setup
    previous = signal.getsignal(signal.SIGUSR1)
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    try:
        tune_module._setup_signal_catching()
        handler = signal.getsignal(signal.SIGUSR1)
        assert (handler.__module__, handler.__qualname__) == ray_internals.TUNE_STOP_HANDLER
    finally:
        os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        signal.signal(signal.SIGUSR1, previous)
