"""Real servers for the operations tests: `prefect server`, a Prefect worker, `mlflow server`.

Every server binds to 127.0.0.1 on a free port, runs in its own process group and logs to a file.
It is stopped by PID: SIGTERM to its process group, a second SIGTERM for a process that turns the
first one into a graceful shutdown (Prefect's worker), then SIGKILL for whatever is left of the
group and of every process it had started (a worker's flow runs and their Ray processes).

Nothing here leaves loopback. Telemetry is off in every environment, the suite's network guard
(tests/support/netguard) is inherited by every Python process started, and the Prefect server
gets a dead loopback proxy for its one outbound request (the integrations registry that creating
a work pool asks for; the server then falls back to its bundled copy).
"""

from __future__ import annotations

import contextlib
import ipaddress
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

from paramaudit.environment import QUIET_DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NETGUARD = ROOT / "tests" / "support" / "netguard"
# A closed port on loopback: a request sent through this "proxy" fails at once, locally.
DEAD_PROXY = "http://127.0.0.1:9"

QUIET = {**QUIET_DEFAULTS, "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(guard_dir: Path | None = None, **extra: str) -> dict[str, str]:
    """This process's environment without Prefect/MLflow/Ray/proxy settings, telemetry off.

    With guard_dir, the network guard refuses and logs any non-loopback attempt of every Python
    process that inherits the environment.
    """
    drop = ("PREFECT_", "MLFLOW_", "RAY_ADDRESS", "PARAMAUDIT_HOME", "HTTP_PROXY", "HTTPS_PROXY",
            "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(QUIET)
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


# -- processes -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgrp: int
    state: str
    start: int  # clock ticks since boot: tells a process from a later one with the same PID


def processes() -> dict[int, Proc]:
    """Every process on the machine, from /proc."""
    out: dict[int, Proc] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2:].split()  # after "pid (comm) "
        out[int(entry)] = Proc(int(entry), int(fields[1]), int(fields[2]), fields[0],
                               int(fields[19]))
    return out


def family(pid: int) -> list[Proc]:
    """pid, everything it started (recursively), and everything in its process group."""
    procs = processes()
    found = {p.pid for p in procs.values() if p.pgrp == pid} | {pid}
    grew = True
    while grew:
        kids = {p.pid for p in procs.values() if p.ppid in found} - found
        grew, found = bool(kids), found | kids
    return [procs[p] for p in found if p in procs]


def pid_alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in "ZX"


def wait_gone(pid: int, within: float = 30.0) -> bool:
    """Wait until the process is gone (or a zombie); False if it is still there after ``within``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


def listeners() -> set[tuple[str, int]]:
    """Listening TCP sockets on this machine as (address, port)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            addr, port = fields[1].split(":")
            # the kernel prints each 32-bit word of the address in host (little-endian) order
            raw = b"".join(bytes.fromhex(addr[i:i + 8])[::-1] for i in range(0, width, 8))
            ip_obj = ipaddress.ip_address(raw)
            mapped = getattr(ip_obj, "ipv4_mapped", None)
            found.add((str(mapped or ip_obj), int(port, 16)))
    return found


def _alive(members: list[Proc]) -> list[Proc]:
    now = processes()
    return [m for m in members
            if m.pid in now and now[m.pid].start == m.start and now[m.pid].state not in "ZX"]


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@dataclass
class Service:
    """A process we started: its log, URL and how to stop it."""

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

    def stop(self, grace: float = 30.0) -> list[int]:
        """SIGTERM the group (twice if asked), then SIGKILL the rest; the PIDs that needed it."""
        if self.stopped:
            return []
        self.stopped = True
        members = family(self.pid)
        for _ in range(self.graceful_signals):
            if not _alive(members):
                break
            _signal_group(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace / self.graceful_signals
            while _alive(members) and time.monotonic() < deadline:
                self.proc.poll()
                members += [m for m in family(self.pid) if m not in members]
                time.sleep(0.2)
        killed = _alive(members)
        _signal_group(self.pid, signal.SIGKILL)
        for m in killed:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(m.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        return [m.pid for m in killed]


def spawn(name: str, cmd: list[str], env: dict[str, str], log: Path, cwd: Path | None = None,
          url: str = "", graceful_signals: int = 1) -> Service:
    """Start cmd in its own process group (and session) with its output in log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return Service(name, proc, log, url, graceful_signals)


def wait_until(check: Callable[[], bool], service: Service, timeout: float, what: str) -> None:
    """Poll check() until true; fail early, with the log, when the process dies."""
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


def run_checked(cmd: list[str], env: dict[str, str], cwd: Path, log: Path,
                timeout: float = 180) -> str:
    """Run a command to completion in its own process group; its output (raises on failure)."""
    service = spawn(Path(cmd[0]).name + " " + " ".join(cmd[1:4]), cmd, env, log, cwd=cwd)
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
def stopping(*services: Service | None) -> Iterator[None]:
    """Stop the services, in the order given, however the block ends."""
    try:
        yield
    finally:
        for service in services:
            if service is not None:
                with contextlib.suppress(Exception):
                    service.stop()


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when GET url answers 2xx."""
    try:
        with _opener().open(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError):
        return False


def http_json(method: str, url: str, body: Any = None, timeout: float = 10.0) -> Any:
    """A JSON request to a loopback API."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with _opener().open(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


# -- Prefect ---------------------------------------------------------------------------------------
def prefect_env(api_url: str, home: Path, guard_dir: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment of a Prefect CLI, client or worker that talks to the server at api_url."""
    return base_env(guard_dir, PREFECT_API_URL=api_url, PREFECT_HOME=str(home), **extra)


def start_prefect_server(home: Path, log: Path, guard_dir: Path | None = None,
                         scheduler: bool = False) -> Service:
    """`prefect server start` on a free 127.0.0.1 port, with a fresh database under home.

    The scheduler service is off unless asked for: deployments keep their schedules, but no
    scheduled run can start behind a test's back (a test that runs across 02:00 UTC would
    otherwise start the full nightly pipeline).
    """
    port = free_port()
    env = base_env(
        guard_dir, PREFECT_HOME=str(home), PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED=str(scheduler).lower(),
        HTTPS_PROXY=DEAD_PROXY, HTTP_PROXY=DEAD_PROXY, NO_PROXY="127.0.0.1,localhost",
    )
    return spawn("prefect server",
                 [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                  "--port", str(port)],
                 env, log, url=f"http://127.0.0.1:{port}")


def wait_prefect_server(server: Service, timeout: float = 120) -> None:
    wait_until(lambda: http_ok(f"{server.url}/api/health"), server, timeout, "healthy API")


def start_make_worker(env: dict[str, str], log: Path) -> Service:
    """`make worker` (the README's command) in the repo: a process worker for paramaudit-pool.

    `-o install` skips the venv check: the tests already run in the installed venv.
    """
    return spawn("make worker", ["make", "--no-print-directory", "-o", "install", "worker"],
                 env, log, cwd=ROOT, graceful_signals=2)


def wait_worker(worker: Service, api_url: str, pool: str, timeout: float = 90) -> str:
    """Until a worker has sent its first heartbeat for the pool; its name."""
    names: list[str] = []

    def online() -> bool:
        names[:] = [w["name"] for w in http_json(
            "POST", f"{api_url}/work_pools/{pool}/workers/filter", {})
            if w.get("status") == "ONLINE"]
        return bool(names)

    wait_until(online, worker, timeout, f"heartbeat in work pool {pool!r}")
    return names[0]


# -- MLflow ----------------------------------------------------------------------------------------
def start_mlflow_server(root: Path, log: Path, guard_dir: Path | None = None) -> Service:
    """`mlflow server`: sqlite backend, artifacts proxied into root/artifacts, no job workers."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    env = base_env(guard_dir, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    return spawn("mlflow server",
                 [str(BIN / "mlflow"), "server",
                  "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                  "--artifacts-destination", str(root / "artifacts"),
                  "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                 env, log, cwd=root, url=f"http://127.0.0.1:{port}")


def wait_mlflow_server(server: Service, timeout: float = 120) -> None:
    wait_until(lambda: http_ok(f"{server.url}/health"), server, timeout, "healthy /health")


SERVER_APP = "paramaudit.app.prefect_server:create_app"  # the CLI's temporary server's app


def with_environment(entry: str) -> dict[int, str]:
    """Live (not zombie) processes whose environment holds ``entry`` (``NAME=value``): their
    command lines, by PID."""
    found: dict[int, str] = {}
    for proc in processes().values():
        if proc.state in "ZX":
            continue
        try:
            if entry.encode() not in Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0"):
                continue
            found[proc.pid] = Path(f"/proc/{proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return found


def prefect_servers_with_home(home: Path) -> list[int]:
    """PIDs of the CLI's temporary Prefect servers whose PREFECT_HOME is ``home``."""
    return [pid for pid, cmd in with_environment(f"PREFECT_HOME={home}").items() if SERVER_APP in cmd]
