"""Prefect's temporary API server, started by the CLI as its first act.

With no API URL configured, Prefect starts a temporary server when a flow is first called: it
imports the whole server application into the calling process (about 2.5 s here), starts it as a
subprocess and waits about 6 s for it, all before the flow's body runs. The CLI starts that same
server (the uvicorn command Prefect's ``SubprocessASGIServer`` runs, with ``create_app`` below
as its app factory) before it imports torch, Ray, MLflow or Prefect, so the server boots while
those imports and Ray's start run, and the CLI never imports the server application itself. It
listens on 127.0.0.1 only and is stopped by PID at exit.
"""

from __future__ import annotations

import atexit
import gc
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from paramaudit.environment import LOOPBACK
from paramaudit.environment import free_port as _free_port  # a name the start-up tests replace

HOST = LOOPBACK
GATE_ENV = "PARAMAUDIT_PREFECT_SERVER_GATE"  # see EmbeddedPrefectServer.release


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the CLI dies, even by SIGKILL (Linux only)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: the atexit stop still runs on any exit but SIGKILL


def api_url_configured() -> bool:
    """True when the environment names a Prefect API (checked before Prefect is imported)."""
    return bool(os.environ.get("PREFECT_API_URL"))


class EmbeddedPrefectServer:
    """A Prefect API server in a subprocess on a free loopback port, for one CLI run."""

    # uvicorn exits with 3 when the application fails to start: a port taken since we chose it,
    # or two servers creating a new Prefect database at once (two pipelines started together).
    # Prefect's own temporary server retries on it too.
    STARTUP_FAILED = 3
    RETRIES = 3

    def __init__(self, gated: bool = False) -> None:
        """Start it; ``gated``: it imports, then waits for :meth:`release` to go on (see there)."""
        self._log: IO[bytes] = tempfile.TemporaryFile(prefix="paramaudit-prefect-server-")
        self.process: subprocess.Popen[Any] | None = None
        self.port = 0
        self._starts = 0
        self._gated = gated
        self._launch()
        # atexit, not a finally: Prefect sends its last logs and events while Python shuts its
        # threads down, which happens before atexit handlers run
        atexit.register(self.stop)

    def _launch(self) -> None:
        spec = importlib.util.find_spec("prefect")  # where it is, without importing it
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("prefect is not installed")
        app_dir = Path(next(iter(spec.submodule_search_locations))).parent
        env = dict(os.environ, PREFECT_UI_ENABLED="0", PREFECT_SERVER_API_HOST=HOST)
        env.pop("PREFECT_API_URL", None)
        # the app comes from create_app below, so this package must import there as it does here
        here = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([here, *filter(None, [env.get("PYTHONPATH")])])
        if self._gated:
            env[GATE_ENV] = "1"
        self.port = _free_port()
        self._starts += 1
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), "--factory",
             "paramaudit.app.prefect_server:create_app", "--host", HOST, "--port", str(self.port),
             "--log-level", "error", "--lifespan", "on"],
            env=env, stdin=subprocess.PIPE if self._gated else subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            # its own process group: Ctrl-C at a terminal signals the whole foreground group,
            # and a server gone before the CLI has recorded the stop in it slows that stop
            # down (the CLI stops the server itself)
            start_new_session=True,
        )

    def release(self) -> None:
        """Let a gated server go on from its imports to its database and its port.

        The CLI starts the server gated before it checks the input, so that the server's imports
        (most of its start-up) overlap the checks; until released the server has touched nothing,
        so bad input kills it at once (:meth:`stop`) instead of waiting for it to finish importing
        (uvicorn defers SIGTERM until then), and a first run's Prefect database is never left
        half-created.
        """
        proc, gated = self.process, self._gated
        self._gated = False  # a relaunch (wait_ready) starts ungated
        if not gated or proc is None or proc.stdin is None:
            return
        try:
            proc.stdin.write(b"go\n")
            proc.stdin.close()
        except BrokenPipeError:
            pass  # it has exited: wait_ready reports its output

    @property
    def api_url(self) -> str:
        """The URL to set as PREFECT_API_URL."""
        return f"http://{HOST}:{self.port}/api"

    def wait_ready(self, timeout: float) -> float:
        """Block until the server answers /health; return the seconds waited."""
        start = time.monotonic()
        while True:
            if self.process is not None and self.process.poll() == self.STARTUP_FAILED \
                    and self._starts < self.RETRIES:
                self._launch()
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"Prefect's temporary server exited before it was ready: "
                                   f"{self._last_output()}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return time.monotonic() - start
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() - start > timeout:
                output = self._last_output()  # read before stop() closes the log
                self.stop()
                raise RuntimeError(f"Prefect's temporary server was not ready within {timeout:.0f} s "
                                   f"(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS): {output}")
            time.sleep(0.05)

    def _last_output(self) -> str:
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        return lines[-1][:300] if lines else "no output"

    def stop(self) -> None:
        """Terminate the server and reap it (SIGKILL after 5 s; at once while still gated)."""
        proc, self.process = self.process, None
        if proc is None:
            return
        if self._gated:
            proc.kill()  # still importing or waiting at the gate: it has written nothing
        else:
            proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
        self._log.close()


def create_app() -> Any:
    """The server process's app factory (uvicorn --factory): Prefect's, with the GC paused.

    The server process spends most of its start-up importing Prefect's server (FastAPI,
    SQLAlchemy, docket): the same pause as the CLI's (cli.cmd_run) saves about a tenth of it.
    A gated server (GATE_ENV) then waits for the CLI's go-ahead on stdin; without it (bad input,
    or the CLI gone) it exits before it creates the app, which opens the database.
    """
    gc.disable()
    try:
        from paramaudit.app.prefect_internals import ephemeral_app_factory

        build = ephemeral_app_factory()
        if os.environ.get(GATE_ENV) and sys.stdin.readline().strip() != "go":
            os._exit(0)  # not released: nothing was started, nothing to clean up
        return build()
    finally:
        gc.freeze()
        gc.enable()
