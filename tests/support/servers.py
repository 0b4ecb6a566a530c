"""Real servers for the operations tests: `prefect server`, `prefect worker`, `mlflow server`.

Every server binds to 127.0.0.1 on a free port, runs in its own process group (so its children go
with it), logs to a file, and is stopped by PID: SIGTERM to the group, a second SIGTERM for
processes that turn the first one into a graceful shutdown (Prefect's worker), then SIGKILL.

Nothing here leaves loopback. Telemetry is off in every environment, the suite's network guard
(tests/support/netguard) is inherited by every Python process started, and the Prefect server
gets a dead loopback proxy for its only outbound request (the integrations registry a work-pool
creation asks for; it then falls back to its bundled copy).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NETGUARD = ROOT / "tests" / "support" / "netguard"
# A closed port on loopback: an HTTP(S) request sent through it fails at once, locally.
DEAD_PROXY = "http://127.0.0.1:9"

QUIET = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "PYTHONUNBUFFERED": "1",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(guard_dir: Path | None = None, **extra: str) -> dict[str, str]:
    """This process's environment without Prefect/MLflow/proxy settings, telemetry off.

    With guard_dir, the network guard refuses and logs any non-loopback attempt of every Python
    process that inherits the environment.
    """
    drop = ("PREFECT_", "MLFLOW_", "RAY_ADDRESS", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
            "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(QUIET)
    # the venv's tools first: a worker's flow-run process and `prefect` find the repo's python
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    if guard_dir is not None:
        guard_dir.mkdir(parents=True, exist_ok=True)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(NETGUARD)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        env["PARAMAUDIT_NETGUARD_DIR"] = str(guard_dir)
        env["PARAMAUDIT_NETGUARD_BLOCK"] = "1"
    env.update(extra)
    return env


def guard_findings(guard_dir: Path) -> list[str]:
    """Every non-loopback attempt the guard logged (empty: everything stayed local)."""
    return [line for log in sorted(guard_dir.glob("net-*.log"))
            for line in log.read_text().splitlines()]


def tail(path: Path, chars: int = 3000) -> str:
    """The end of a log file, for failure messages."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


@dataclass
class Service:
    """A process we started: its command, log, URL and how to stop it."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    url: str = ""
    graceful_signals: int = 1
    stopped: bool = field(default=False, init=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def describe(self) -> str:
        return f"{self.name} (pid {self.pid}, log {self.log}):\n{tail(self.log)}"

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM the process group (again if asked), then SIGKILL what is left of it."""
        if self.stopped:
            return self.proc.returncode
        self.stopped = True
        pgid = self.pid  # started with start_new_session=True: group id == pid
        for _ in range(self.graceful_signals):
            if self.proc.poll() is not None:
                break
            _signal_group(pgid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace / self.graceful_signals)
        if self.proc.poll() is None:
            _signal_group(pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        # children that outlived their parent (uvicorn, gunicorn, flow-run processes)
        _signal_group(pgid, signal.SIGKILL)
        return self.proc.returncode


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def spawn(name: str, cmd: list[str], env: dict[str, str], log: Path, cwd: Path | None = None,
          url: str = "", graceful_signals: int = 1) -> Service:
    """Start cmd in its own process group with output to log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return Service(name, proc, log, url, graceful_signals)


def wait_until(check: Callable[[], bool], service: Service, timeout: float, what: str) -> None:
    """Poll check() until true; fail early with the log when the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            raise RuntimeError(f"{service.name} exited ({service.proc.returncode}) before "
                               f"{what}: {service.describe()}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.25)
    raise TimeoutError(f"{service.name}: no {what} after {timeout:.0f} s: {service.describe()}")


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when GET url answers 2xx (no proxy: the URL is on loopback)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:  # noqa: S310 - loopback test URL
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError):
        return False


def http_json(method: str, url: str, body: Any = None, timeout: float = 10.0) -> Any:
    """A JSON request to a loopback API."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=timeout) as resp:  # noqa: S310 - loopback test URL
        return json.loads(resp.read() or b"null")


# -- Prefect ---------------------------------------------------------------------------------------
def prefect_env(api_url: str, home: Path, guard_dir: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment of a Prefect client, CLI or worker talking to the server at api_url."""
    return base_env(guard_dir, PREFECT_API_URL=api_url, PREFECT_HOME=str(home),
                    PREFECT_SERVER_ANALYTICS_ENABLED="false", **extra)


def start_prefect_server(home: Path, log: Path, guard_dir: Path | None = None) -> Service:
    """`prefect server start` on a free 127.0.0.1 port with a fresh database under home."""
    port = free_port()
    env = base_env(
        guard_dir, PREFECT_HOME=str(home), PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port), PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        # the server asks GitHub for the integrations registry when a work pool is created;
        # a dead loopback proxy makes that fail at once, locally (it falls back to its copy)
        HTTPS_PROXY=DEAD_PROXY, HTTP_PROXY=DEAD_PROXY, NO_PROXY="127.0.0.1,localhost",
    )
    return spawn("prefect server",
                 [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                  "--port", str(port)],
                 env, log, url=f"http://127.0.0.1:{port}")


def wait_prefect_server(server: Service, timeout: float = 90) -> None:
    wait_until(lambda: http_ok(f"{server.url}/api/health"), server, timeout, "healthy API")


def start_worker(pool: str, env: dict[str, str], log: Path, cwd: Path, name: str) -> Service:
    """`prefect worker start --pool pool`; the worker needs two signals to stop."""
    return spawn("prefect worker",
                 [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--name", name,
                  "--type", "process"],
                 env, log, cwd=cwd, graceful_signals=2)


def wait_worker(worker: Service, api_url: str, pool: str, name: str, timeout: float = 60) -> None:
    """Until the worker has sent its first heartbeat for the pool."""
    def online() -> bool:
        workers = http_json("POST", f"{api_url}/work_pools/{pool}/workers/filter", {})
        return any(w.get("name") == name for w in workers)

    wait_until(online, worker, timeout, f"heartbeat in work pool {pool!r}")


# -- MLflow ----------------------------------------------------------------------------------------
def start_mlflow_server(root: Path, log: Path, guard_dir: Path | None = None) -> Service:
    """`mlflow server`: sqlite backend, proxied artifacts under root, no job workers."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    env = base_env(guard_dir, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    return spawn("mlflow server",
                 [str(BIN / "mlflow"), "server",
                  "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                  "--artifacts-destination", str(root / "artifacts"),
                  "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                 env, log, cwd=root, url=f"http://127.0.0.1:{port}")


def wait_mlflow_server(server: Service, timeout: float = 90) -> None:
    wait_until(lambda: http_ok(f"{server.url}/health"), server, timeout, "healthy /health")


# -- commands --------------------------------------------------------------------------------------
def run_checked(cmd: list[str], env: dict[str, str], cwd: Path, log: Path,
                timeout: float = 120) -> str:
    """Run a command to completion (own process group, killed on timeout); its output."""
    service = spawn(" ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd[:4])),
                    cmd, env, log, cwd=cwd)
    try:
        code = service.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        service.stop(grace=5)
        raise TimeoutError(f"{service.name}: still running after {timeout:.0f} s: "
                           f"{service.describe()}") from None
    finally:
        _signal_group(service.pid, signal.SIGKILL)
    if code != 0:
        raise RuntimeError(f"{service.name} exited {code}: {service.describe()}")
    return log.read_text(errors="replace")


@contextlib.contextmanager
def stopping(*services: Service) -> Iterator[None]:
    """Stop services (in the order given) however the block ends."""
    try:
        yield
    finally:
        for service in services:
            with contextlib.suppress(Exception):
                service.stop()
