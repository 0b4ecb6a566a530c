"""paramaudit.stopping: a stop signal ends the process in time, wherever it lands.

Each case runs a small script in its own interpreter: the module takes over the process's
signals, its stderr and its exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from paramaudit import stopping
from paramaudit.search import ray_internals

ROOT = Path(__file__).resolve().parents[2]


def _script(body: str, timeout: float = 10.0) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``body`` after ``install()``; SIGTERM(s) come from ``kill(after)`` calls in it."""
    prelude = textwrap.dedent("""\
        import os, signal, sys, threading, time, weakref
        from paramaudit import stopping

        def kill(after, sig=signal.SIGTERM):
            threading.Timer(after, os.kill, (os.getpid(), sig)).start()

        """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(body)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - start


def test_a_stop_lost_in_a_weakref_callback_is_sent_again() -> None:
    # Python prints an exception raised in a weakref callback ("Exception ignored") and drops
    # it: the run would go on. The stop must still end it, after its own cleanup.
    proc, seconds = _script("""
        stopping.install()

        class Thing:
            pass

        def callback(_ref):
            end = time.monotonic() + 0.6
            while time.monotonic() < end:  # the signal lands in here
                pass

        thing = Thing()
        ref = weakref.ref(thing, callback)
        kill(0.2)
        try:
            del thing  # runs the callback
            for _ in range(300):
                time.sleep(0.01)
            print("ran to the end")
        except KeyboardInterrupt:
            print("cleaned up")
        stopping.exit_interrupted()
    """)
    assert proc.returncode == 130, proc.stderr
    assert proc.stdout.split() == ["cleaned", "up"]
    assert proc.stderr == "paramaudit: interrupted\n"
    assert seconds < 3


def test_a_signal_in_a_finaliser_waits_for_it_to_end() -> None:
    proc, _ = _script("""
        stopping.install()

        class Thing:
            def __del__(self):
                end = time.monotonic() + 0.5
                while time.monotonic() < end:
                    pass
                print("finaliser done", flush=True)

        thing = Thing()
        kill(0.1)
        try:
            del thing
            time.sleep(3)
        except KeyboardInterrupt:
            print("interrupted after it")
        stopping.exit_interrupted()
    """)
    assert proc.returncode == 130
    assert proc.stdout.splitlines() == ["finaliser done", "interrupted after it"]


def test_a_second_signal_does_not_cut_the_cleanup_short() -> None:
    proc, seconds = _script("""
        stopping.install()
        kill(0.2)
        kill(0.5)  # during the cleanup
        try:
            time.sleep(5)
        except KeyboardInterrupt:
            time.sleep(0.8)  # ending the MLflow runs, say
            print("cleanup finished")
        stopping.exit_interrupted()
    """)
    assert proc.returncode == 130
    assert proc.stdout.strip() == "cleanup finished"
    assert proc.stderr == "paramaudit: interrupted\n"
    assert seconds < 3


def test_the_deadline_ends_a_run_that_ignores_the_stop_and_its_processes() -> None:
    proc, seconds = _script("""
        import subprocess
        stopping.install(deadline=1.0)
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(child.pid, flush=True)
        kill(0.3)
        while True:
            try:
                time.sleep(0.05)
            except KeyboardInterrupt:
                sys.stderr.write("this line is muted\\n")  # swallowed: the deadline ends it
    """)
    assert proc.returncode == 130
    assert proc.stderr == "paramaudit: interrupted\n"
    assert 1.0 < seconds < 3
    child = int(proc.stdout.split()[0])
    time.sleep(0.2)
    stat = Path(f"/proc/{child}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_a_third_signal_ends_the_process_at_once() -> None:
    proc, seconds = _script("""
        stopping.install()
        kill(0.2, signal.SIGINT)
        kill(0.4)
        kill(0.6)
        try:
            time.sleep(5)
        except KeyboardInterrupt:
            time.sleep(5)  # a cleanup that hangs
        stopping.exit_interrupted()
    """)
    assert proc.returncode == 130
    assert proc.stderr == "paramaudit: interrupted\n"
    assert seconds < 2


def test_a_shielded_block_ends_before_the_stop_is_raised() -> None:
    proc, _ = _script("""
        stopping.install()
        kill(0.1)
        try:
            with stopping.shielded():
                time.sleep(0.5)
                print("shielded block done", flush=True)
            print("not reached")
        except KeyboardInterrupt:
            print("then interrupted")
        stopping.exit_interrupted()
    """)
    assert proc.returncode == 130
    assert proc.stdout.splitlines() == ["shielded block done", "then interrupted"]


def test_debug_keeps_stderr() -> None:
    proc, _ = _script("""
        stopping.install(debug=True)
        kill(0.1)
        try:
            time.sleep(3)
        except KeyboardInterrupt:
            sys.stderr.write("still visible\\n")
        stopping.exit_interrupted()
    """)
    assert proc.returncode == 130
    assert proc.stderr == "still visible\nparamaudit: interrupted\n"


def test_no_stop_no_change() -> None:
    proc, _ = _script("""
        stopping.install()
        print(stopping.requested(), stopping.installed(),
              stopping.is_handler(signal.getsignal(signal.SIGTERM)))
    """)
    assert proc.returncode == 0
    assert proc.stdout.split() == ["False", "True", "True"]


def test_import_machinery_is_never_interrupted() -> None:
    # importlib's own code holds module locks: an exception there can leave one held
    ns: dict[str, object] = {}
    exec(compile("import sys\nframe = sys._getframe()", "<frozen importlib._bootstrap>", "exec"),
         ns)
    assert not stopping._can_raise_here(ns["frame"])  # type: ignore[arg-type]
    assert stopping._can_raise_here(sys._getframe())


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX only")
def test_a_stop_during_a_search_goes_to_tunes_own_stop_handler() -> None:
    def signal_interrupt_tune_run(sig: int, frame: object) -> None:
        pass

    previous = signal.getsignal(signal.SIGUSR1)
    try:
        signal.signal(signal.SIGUSR1, signal_interrupt_tune_run)
        assert stopping._tune_stop() is None  # the name alone is not Tune's handler
        signal_interrupt_tune_run.__module__, signal_interrupt_tune_run.__qualname__ = \
            ray_internals.TUNE_STOP_HANDLER
        assert stopping._tune_stop() is signal_interrupt_tune_run
    finally:
        signal.signal(signal.SIGUSR1, previous)
