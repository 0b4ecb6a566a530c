"""Stop signals: SIGTERM and SIGINT end a run within a deadline, whatever it is doing.

Python runs a signal's handler in the main thread, between two bytecodes of whatever runs there,
and a KeyboardInterrupt raised from it is not safe everywhere: raised inside importlib's own
code it can leave a module lock held (the next import of that module, in any thread, waits
forever), and raised inside a weakref callback or a ``__del__`` it is printed ("Exception
ignored in ...") and lost, and the run goes on. Both were seen with a stop while the search
started. So, for ``paramaudit run`` (:func:`install`):

- the first signal raises KeyboardInterrupt where that is safe, else it is held (``pending``)
  and sent again a moment later; one that was lost anyway (``sys.unraisablehook`` sees it) is
  sent again too. The flow's context managers then end the MLflow runs KILLED and stop Ray.
- During Ray Tune's search the stop goes to Tune instead (its SIGUSR1 handler, what Ctrl-C does
  by default): Tune ends its trials and returns, and the search raises KeyboardInterrupt with its
  trials' runs ended KILLED (see ``search.ray_session``).
- A later signal never raises into that cleanup (which would leave runs RUNNING): the second
  gives it ``SECOND_GRACE_S`` more, the third ends the process at once.
- Whatever happens, the process ends ``DEADLINE_S`` after the first signal: a watcher thread,
  woken through ``signal.set_wakeup_fd`` even while the main thread is stuck in C code, stops
  the run's processes and exits. The CLI's own end (:func:`exit_interrupted`) is the same.
- From the first signal on, the process's stderr (fd 2: Python, Ray's C++ core, Prefect and Tune
  logs) goes to /dev/null (not with ``--debug``): the run ends with ``paramaudit: interrupted``
  and nothing else.
- The run's processes (Ray's, Prefect's server, including those Ray's raylet started and that
  outlive it) carry ``MARK_ENV`` in their environment; the exit stops every one of them.

No import of Prefect, Ray or MLflow here: the search (core) asks :func:`requested` and
:func:`shielded`.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

DEADLINE_S = 8.0  # first signal -> the process has ended (the README promises 10 s)
SECOND_GRACE_S = 2.0  # second signal -> this much more for the cleanup under way
TERM_GRACE_S = 1.5  # the run's processes get SIGTERM, then SIGKILL after this
EXIT_INTERRUPT = 130
MARK_ENV = "PARAMAUDIT_RUN_MARK"  # inherited by every process the run starts
LINE = b"paramaudit: interrupted\n"
_STOPS = (signal.SIGTERM, signal.SIGINT)


class _State:
    def __init__(self) -> None:
        self.installed = False
        self.debug = False
        self.requested_at: float | None = None
        self.deadline = 0.0
        self.limit = DEADLINE_S
        self.delivered = False  # a KeyboardInterrupt (or Tune's stop) is under way
        self.pending = False  # requested but not raised yet: the watcher sends it again
        self.signals = 0  # stop signals from outside (the watcher counts them)
        self.resent = 0  # of the signals the watcher sees, those it sent itself
        self.shield = 0
        self.immediate = False  # nothing to end yet: a stop exits at once (see at_once)
        self.stderr_fd = 2  # where the last line goes once fd 2 is muted
        self.mark = ""
        self.wake_r = self.wake_w = -1
        self.lock = threading.RLock()
        self.exiting = threading.Lock()


_S = _State()
_MAIN = threading.main_thread().ident or 0


def install(debug: bool = False, deadline: float = DEADLINE_S) -> None:
    """Take over SIGTERM and SIGINT for this process (main thread, once, before any start).

    ``debug``: stderr stays as it is after a stop. ``deadline``: seconds from the first signal
    to the end of the process.
    """
    if _S.installed:
        return
    _S.installed, _S.debug, _S.limit = True, debug, deadline
    _S.mark = f"{os.getpid()}-{time.time_ns()}"
    os.environ[MARK_ENV] = _S.mark
    for sig in _STOPS:
        signal.signal(sig, _on_signal)
    r, w = os.pipe()
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    _S.wake_r, _S.wake_w = r, w
    previous_hook = sys.unraisablehook

    def unraisable(info: Any) -> None:
        if _S.requested_at is None:
            previous_hook(info)
        elif isinstance(info.exc_value, KeyboardInterrupt):
            with _S.lock:  # ours, lost in a callback or __del__: send it again
                _S.delivered, _S.pending = False, True
            _wake()
        # anything else after a stop: stderr is muted anyway

    sys.unraisablehook = unraisable
    threading.Thread(target=_watch, name="paramaudit-stop", daemon=True).start()


def installed() -> bool:
    """True in a process whose stop signals this module handles (``paramaudit run``)."""
    return _S.installed


def requested() -> bool:
    """True once a stop signal arrived."""
    return _S.requested_at is not None


def is_handler(handler: object) -> bool:
    """True for this module's signal handler (a session restores it after Ray's start)."""
    return handler is _on_signal


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """A stop waits until this block ends (Ray's shutdown: half done, it leaves processes)."""
    with _S.lock:
        _S.shield += 1
    try:
        yield
    finally:
        with _S.lock:
            _S.shield -= 1
            raise_now = (not _S.shield and _S.pending and not _S.delivered
                         and threading.current_thread() is threading.main_thread())
            if raise_now:
                _S.pending, _S.delivered = False, True
        if raise_now:
            raise KeyboardInterrupt


def _wake() -> None:
    """Make the watcher look again (a held stop to send)."""
    with contextlib.suppress(OSError):
        os.write(_S.wake_w, b"\0")


def at_once(allowed: bool) -> None:
    """While ``allowed``, a stop ends the process at once (its processes stopped, exit 130).

    For the start-up, before the flow runs: nothing there needs ending but processes, and the
    main thread can sit for seconds inside Ray's C++ start (waiting on its GCS) where no signal
    handler runs. From the flow's start on, the main thread ends the MLflow runs first.
    """
    with _S.lock:
        _S.immediate = allowed
        now = allowed and _S.requested_at is not None
    if now:
        _end(hard=True)


def _arm() -> None:
    """The first stop signal: start the deadline, mute stderr; during start-up, exit."""
    with _S.lock:
        if _S.requested_at is not None:
            return
        _S.requested_at = time.monotonic()
        _S.deadline = _S.requested_at + _S.limit
        if not _S.debug:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sys.stderr.flush()
            try:
                _S.stderr_fd = os.dup(2)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
            except OSError:
                _S.stderr_fd = 2
        now = _S.immediate
    if now:
        _end(hard=True)


def _can_raise_here(frame: FrameType | None) -> bool:
    """False where a KeyboardInterrupt would corrupt an import lock or be lost (see above)."""
    if frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
        return False
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return False
        frame = frame.f_back
    return True


def _tune_stop() -> Any:
    """Ray Tune's stop handler while a search is running there, else None.

    Tune's ``signal_interrupt_tune_run`` ends the search after its current step (trials
    stopped, state saved). Tune keeps it on SIGUSR1 even with its SIGINT handler disabled
    (``search.ray_session`` disables that one under this module, so that Ctrl-C comes here).
    """
    handler = signal.getsignal(signal.SIGUSR1) if hasattr(signal, "SIGUSR1") else None
    if getattr(handler, "__module__", None) != "ray.tune.tune":
        return None  # (and Ray and paramaudit.search need not be imported to say so)
    from paramaudit.search.ray_internals import is_tune_stop_handler

    return handler if is_tune_stop_handler(handler) else None


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _arm()
    with _S.lock:
        if _S.delivered:
            return  # a stop is under way: never into its cleanup (the watcher counts this one)
        if _S.shield or not _can_raise_here(frame):
            _S.pending = True
            if not _S.shield:
                _wake()
            return
        _S.pending, _S.delivered = False, True
        tune = _tune_stop()
    if tune is not None:
        tune(signal.SIGUSR1, frame)
        return
    raise KeyboardInterrupt


def _count(data: bytes) -> None:
    """Signals as the wakeup fd reports them, also while the main thread is stuck in C code
    (its handler has not run): the first arms the stop, the second leaves the cleanup
    SECOND_GRACE_S, the third ends the process at once."""
    for byte in data:
        if byte not in (int(signal.SIGTERM), int(signal.SIGINT)):
            continue
        with _S.lock:
            if _S.resent:
                _S.resent -= 1
                continue
            _S.signals += 1
            n = _S.signals
            if n > 1:
                grace = SECOND_GRACE_S if n == 2 else 0.0
                _S.deadline = min(_S.deadline, time.monotonic() + grace)
        if n == 1:
            _arm()


def _watch() -> None:
    """Wakes on every signal (set_wakeup_fd), resends a held stop, enforces the deadline."""
    while True:
        with _S.lock:
            armed, pending, deadline = _S.requested_at is not None, _S.pending, _S.deadline
        timeout = None if not armed else max(0.0, deadline - time.monotonic())
        if pending and not _S.shield:
            timeout = 0.02 if timeout is None else min(timeout, 0.02)
        try:
            ready, _, _ = select.select([_S.wake_r], [], [], timeout)
        except (OSError, ValueError):
            return
        if ready:
            _count(os.read(_S.wake_r, 512))
            continue
        if armed and time.monotonic() >= deadline:
            _end(hard=True)
        with _S.lock:
            resend = _S.pending and not _S.shield and not _S.delivered
        if resend:
            # a real signal, not _thread.interrupt_main: that one does not wake a main thread
            # blocked in a sleep or a wait, so it would be seen only when that ends
            ours = [s for s in _STOPS if signal.getsignal(s) is _on_signal]
            with _S.lock:
                _S.resent += 1
            try:
                signal.pthread_kill(_MAIN, ours[0] if ours else signal.SIGINT)
            except (OSError, ValueError):
                with _S.lock:
                    _S.resent -= 1


def _run_processes() -> list[int]:
    """Live processes that carry this run's mark (Linux /proc), this one excepted."""
    needle = f"{MARK_ENV}={_S.mark}\0".encode()
    found = []
    proc = Path("/proc")
    if not _S.mark or not proc.is_dir():
        return found
    me = os.getpid()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if needle in (entry / "environ").read_bytes() and \
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return found


def _reap() -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def stop_run_processes(grace: float = TERM_GRACE_S) -> None:
    """SIGTERM every process of the run, SIGKILL those still there after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0.5)):
        pids = _run_processes()
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        end = time.monotonic() + wait
        while time.monotonic() < end:
            _reap()
            if not _run_processes():
                return
            time.sleep(0.05)


def _flush_stdout() -> None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stdout.flush()


def _end(hard: bool) -> NoReturn:
    _S.exiting.acquire()  # whoever comes second waits here for the first one's os._exit
    stop_run_processes(0.0 if hard else TERM_GRACE_S)
    # in a thread: a main thread stuck in a write holds stdout's lock
    flush = threading.Thread(target=_flush_stdout, daemon=True)
    flush.start()
    flush.join(0.5)
    with contextlib.suppress(OSError):
        os.write(_S.stderr_fd, LINE)
    # not sys.exit: the interpreter's own end would wait for the threads still importing, run
    # atexit handlers that talk to a server just stopped, and print what they raise
    os._exit(EXIT_INTERRUPT)


def exit_interrupted() -> NoReturn:
    """End an interrupted run: its processes stopped, one line on stderr, exit code 130."""
    _end(hard=False)
