"""``make services``: a team's stack on one machine, under one folder, bound to 127.0.0.1.

``up`` starts PostgreSQL (the system's ``initdb``/``pg_ctl``; as the ``postgres`` user when run
as root, which PostgreSQL refuses to run as) with one database for MLflow and one for Prefect,
``mlflow server`` on the first (psycopg; artifacts proxied into the folder, the job runner off),
``prefect server`` on the second (asyncpg), the work pool with the deployments of prefect.yaml,
and a process worker. ``status`` says what runs, on which ports, and the URLs of both UIs;
``down`` stops all of it by PID. The databases and artifacts stay in the folder, so a later
``up`` finds every run again. ``up`` writes ``env`` (mode 0600): the ``export`` lines that point
a shell at the stack, credentials included. Both servers ask for credentials (401 without):
MLflow runs its basic-auth app (admin ``paramaudit``, its users in PostgreSQL too), Prefect
its API auth string. The passwords (the database's, MLflow's, Prefect's) are made on the first
``up`` and kept in ``secrets.json`` (mode 0600) in the folder, never in the repository.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from paramaudit.environment import LOOPBACK, QUIET_DEFAULTS, free_port
from paramaudit.errors import UserInputError

DEFAULT_DIR = Path(".paramaudit") / "services"
DB_USER = "paramaudit"
DATABASES = ("mlflow", "mlflow_auth", "prefect")  # runs, MLflow's users, Prefect's state
POOL = "paramaudit-pool"
# flow runs the pool runs at once: one night's search uses the machine's cores, so a schedule
# catching up queues its runs rather than piling them onto one machine
POOL_LIMIT_ENV, POOL_LIMIT_DEFAULT = "PARAMAUDIT_POOL_LIMIT", 1
ROOT = Path(__file__).resolve().parents[2]  # the checkout (prefect.yaml, flows/)
BIN = Path(sys.executable).parent
# Prefect's server fetches its integrations registry from the internet when a work pool is
# created; through a closed loopback port the request fails at once and the server uses its
# bundled copy: nothing leaves the machine
DEAD_PROXY = "http://127.0.0.1:9"
SERVICES = ("postgres", "mlflow", "prefect", "worker")
PG_BIN_DIRS = Path("/usr/lib/postgresql")  # Debian's: <version>/bin, not on the PATH


class Stack:
    """The folder's paths, its saved state (ports, PIDs) and its secrets."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.pgdata, self.logs = self.root / "postgres", self.root / "logs"
        self.state_file, self.secrets_file = self.root / "state.json", self.root / "secrets.json"
        self.env_file = self.root / "env"

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def save(self, state: dict[str, Any]) -> None:
        _write_private(self.state_file, json.dumps(state, indent=2))

    def secret(self, name: str) -> str:
        """A password of the stack (made on first use, kept in secrets.json, mode 0600):
        ``db`` PostgreSQL's, ``mlflow`` MLflow's admin's, ``prefect`` Prefect's API's."""
        kept = json.loads(self.secrets_file.read_text()) if self.secrets_file.exists() else {}
        if name not in kept:
            kept[name] = secrets.token_urlsafe(24)
            _write_private(self.secrets_file, json.dumps(kept))
        return str(kept[name])

    def password(self) -> str:
        return self.secret("db")

    def db_url(self, driver: str, db: str, port: int) -> str:
        return f"postgresql+{driver}://{DB_USER}:{self.password()}@{LOOPBACK}:{port}/{db}"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by this user only (created 0600, never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, 0o600)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split()[2] not in "ZX"


def _healthy(url: str, auth: str | None = None) -> bool:
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=2) as resp:  # noqa: S310 (loopback only)
            return resp.status == 200
    except OSError:
        return False


def _wait(what: str, url: str, pid: int, log: Path, timeout: float = 180,
          auth: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _healthy(url, auth):
            return
        if not _alive(pid):
            raise UserInputError(f"services: {what} exited at start (its log: {log})")
        time.sleep(0.5)
    raise UserInputError(f"services: {what} not healthy at {url} after {timeout:.0f} s (log: {log})")


# -- PostgreSQL ------------------------------------------------------------------------------------
def _pg_tool(name: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for p in sorted(PG_BIN_DIRS.glob(f"*/bin/{name}"))), None)
    if found is None:
        raise UserInputError(f"services: PostgreSQL's {name} is not installed (Debian: apt-get "
                             "install postgresql)")
    return found


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the system's postgres user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _pg_run(stack: Stack, cmd: list[str]) -> None:
    proc = subprocess.run(_as_postgres(cmd), capture_output=True, text=True, cwd=stack.pgdata.parent)
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserInputError(f"services: {Path(cmd[0]).name} failed: {last[0][:300]}")


def _init_postgres(stack: Stack) -> None:
    """A new database cluster: local socket trust (its folder is postgres's own, mode 0700),
    TCP on loopback with the password (scram-sha-256)."""
    stack.pgdata.mkdir(parents=True, exist_ok=True)
    pwfile = stack.pgdata.parent / ".pgpass-init"
    _write_private(pwfile, stack.password() + "\n")
    if os.geteuid() == 0:
        import pwd

        pg = pwd.getpwnam("postgres")
        for path in (stack.pgdata, pwfile):
            os.chown(path, pg.pw_uid, pg.pw_gid)
    try:
        _pg_run(stack, [_pg_tool("initdb"), "-D", str(stack.pgdata), "-U", DB_USER,
                        "--pwfile", str(pwfile), "--auth-local=trust",
                        "--auth-host=scram-sha-256", "-E", "UTF8"])
    finally:
        pwfile.unlink(missing_ok=True)


def _start_postgres(stack: Stack, port: int) -> int:
    if not (stack.pgdata / "PG_VERSION").exists():
        _init_postgres(stack)
    log = stack.pgdata / "server.log"  # in the cluster's folder: the postgres user writes it
    opts = f"-c listen_addresses={LOOPBACK} -p {port} -k {stack.pgdata}"
    _pg_run(stack, [_pg_tool("pg_ctl"), "-D", str(stack.pgdata), "-l", str(log), "-o", opts,
                    "-w", "start"])
    for db in DATABASES:
        check = subprocess.run(_as_postgres([_pg_tool("psql"), "-h", str(stack.pgdata), "-p",
                                             str(port), "-U", DB_USER, "-d", "postgres", "-tAc",
                                             f"select 1 from pg_database where datname = '{db}'"]),
                               capture_output=True, text=True)
        if check.stdout.strip() != "1":
            _pg_run(stack, [_pg_tool("createdb"), "-h", str(stack.pgdata), "-p", str(port),
                            "-U", DB_USER, db])
    return int((stack.pgdata / "postmaster.pid").read_text().split()[0])


# -- the servers and the worker --------------------------------------------------------------------
def _spawn(stack: Stack, name: str, cmd: list[str], env: dict[str, str]) -> int:
    stack.logs.mkdir(parents=True, exist_ok=True)
    with open(stack.logs / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=ROOT, start_new_session=True)
    return proc.pid


def _env(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "MLFLOW_"))}
    return {**keep, **QUIET_DEFAULTS, "PATH": os.pathsep.join([str(BIN), keep.get("PATH", "")]),
            **extra}


def _mlflow_auth_config(stack: Stack, port: int) -> Path:
    """MLflow's basic-auth app's config (mode 0600: it holds its database's URL): its users
    in PostgreSQL; the admin, paramaudit, is made at first start (MLFLOW_AUTH_ADMIN_PASSWORD)."""
    path = stack.root / "mlflow-auth.ini"
    _write_private(path, "[mlflow]\ndefault_permission = READ\n"
                   f"database_uri = {stack.db_url('psycopg', 'mlflow_auth', port)}\n"
                   f"admin_username = {DB_USER}\n"
                   "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                   # a password check is a PBKDF2 hash: a pipeline's hundreds of requests would
                   # each pay it; checked once a minute per user instead (one worker process)
                   "auth_cache_ttl_seconds = 60\n")
    return path


def _start_servers(stack: Stack, ports: dict[str, int]) -> dict[str, int]:
    """Both servers on PostgreSQL, each asking for its credentials (401 without them)."""
    pids = {"mlflow": _spawn(stack, "mlflow", [
        str(BIN / "mlflow"), "server", "--app-name", "basic-auth", "--backend-store-uri",
        stack.db_url("psycopg", "mlflow", ports["postgres"]),
        "--artifacts-destination", str(stack.root / "artifacts"), "--host", LOOPBACK,
        "--port", str(ports["mlflow"]), "--workers", "1"],
        _env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
             MLFLOW_AUTH_CONFIG_PATH=str(_mlflow_auth_config(stack, ports["postgres"])),
             MLFLOW_AUTH_ADMIN_PASSWORD=stack.secret("mlflow"),
             # the auth app's CSRF protection signs with it: kept, so a restart keeps sessions
             MLFLOW_FLASK_SERVER_SECRET_KEY=stack.secret("mlflow_flask")))}
    pids["prefect"] = _spawn(stack, "prefect", [
        str(BIN / "prefect"), "server", "start", "--host", LOOPBACK, "--port",
        str(ports["prefect"])], _env(
            PREFECT_HOME=str(stack.root / "prefect-home"),
            PREFECT_SERVER_DATABASE_CONNECTION_URL=stack.db_url("asyncpg", "prefect",
                                                                ports["postgres"]),
            PREFECT_SERVER_API_AUTH_STRING=_prefect_auth(stack),
            HTTPS_PROXY=DEAD_PROXY, HTTP_PROXY=DEAD_PROXY, NO_PROXY=f"{LOOPBACK},localhost"))
    _wait("mlflow server", f"http://{LOOPBACK}:{ports['mlflow']}/health", pids["mlflow"],
          stack.logs / "mlflow.log")
    _wait("prefect server", f"http://{LOOPBACK}:{ports['prefect']}/api/health", pids["prefect"],
          stack.logs / "prefect.log", auth=_prefect_auth(stack))
    return pids


def _prefect_auth(stack: Stack) -> str:
    return f"{DB_USER}:{stack.secret('prefect')}"


def client_env(ports: dict[str, int], stack: Stack | None = None) -> dict[str, str]:
    """What a process needs to use the stack (the ``env`` file's variables); with ``stack``,
    the credentials too."""
    env = {"MLFLOW_TRACKING_URI": f"http://{LOOPBACK}:{ports['mlflow']}",
           "PREFECT_API_URL": f"http://{LOOPBACK}:{ports['prefect']}/api"}
    if stack is not None:
        env.update(MLFLOW_TRACKING_USERNAME=DB_USER, MLFLOW_TRACKING_PASSWORD=stack.secret("mlflow"),
                   PREFECT_API_AUTH_STRING=_prefect_auth(stack))
    return env


def _deploy_and_work(stack: Stack, ports: dict[str, int]) -> int:
    """The work pool and prefect.yaml's deployments (as `make deploy`), then a worker."""
    env = _env(**client_env(ports, stack), PREFECT_HOME=str(stack.root / "client-home"))
    env.pop("PARAMAUDIT_HOME", None)
    prefect = str(BIN / "prefect")
    for cmd in ([prefect, "work-pool", "inspect", POOL], [prefect, "work-pool", "create", POOL,
                                                          "--type", "process"]):
        if subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True).returncode == 0:
            break
    limit = os.environ.get(POOL_LIMIT_ENV, str(POOL_LIMIT_DEFAULT))
    if not limit.isdigit() or int(limit) < 1:
        raise UserInputError(f"services: {POOL_LIMIT_ENV} must be a whole number >= 1, "
                             f"not {limit[:50]!r}")
    if subprocess.run([prefect, "work-pool", "set-concurrency-limit", POOL, limit], env=env,
                      cwd=ROOT, capture_output=True).returncode != 0:
        raise UserInputError(f"services: could not limit work pool {POOL} to {limit} run(s)")
    proc = subprocess.run([prefect, "--no-prompt", "deploy", "--all"], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserInputError(f"services: prefect deploy failed: "
                             f"{(proc.stderr or proc.stdout).strip()[-300:]}")
    return _spawn(stack, "worker", [prefect, "worker", "start", "--pool", POOL],
                  {**env, "PARAMAUDIT_HOME": str(ROOT)})


# -- the verbs -------------------------------------------------------------------------------------
def up(stack: Stack) -> dict[str, Any]:
    """Start the stack; when it already runs, say so and change nothing."""
    state = stack.state()
    if state and all(_alive(state.get("pids", {}).get(s)) for s in SERVICES):
        print(f"services: already running under {stack.root} (make services-status)")
        return state
    if state:
        down(stack, quiet=True)  # a part died: stop the rest, start all of it again
    ports = dict(state.get("ports") or {}) or {s: free_port() for s in SERVICES[:3]}
    pids: dict[str, int] = {}
    try:
        pids["postgres"] = _start_postgres(stack, ports["postgres"])
        stack.save({"ports": ports, "pids": pids})
        pids.update(_start_servers(stack, ports))
        stack.save({"ports": ports, "pids": pids})
        pids["worker"] = _deploy_and_work(stack, ports)
        stack.save({"ports": ports, "pids": pids})
    except BaseException:
        stack.save({"ports": ports, "pids": pids})
        down(stack, quiet=True)  # a half-started stack is not left running
        raise
    _write_private(stack.env_file, "".join(f"export {k}={v}\n"
                                           for k, v in client_env(ports, stack).items()))
    print(f"services: up under {stack.root}; `. {stack.env_file}` points a shell at it")
    status(stack)
    return stack.state()


def status(stack: Stack) -> int:
    """What runs, on which port; 0 when all of it does."""
    state = stack.state()
    if not state:
        print(f"services: not started under {stack.root} (make services)")
        return 1
    ports, pids = state.get("ports", {}), state.get("pids", {})
    urls = {"mlflow": f"http://{LOOPBACK}:{ports.get('mlflow')} (MLflow UI)",
            "prefect": f"http://{LOOPBACK}:{ports.get('prefect')} (Prefect UI)",
            "postgres": f"{LOOPBACK}:{ports.get('postgres')} (databases {', '.join(DATABASES)})",
            "worker": f"pool {POOL}"}
    for name in SERVICES:
        pid = pids.get(name)
        print(f"  {name:<9} {'up' if _alive(pid) else 'down':<5} pid {pid or '-':<8} {urls[name]}")
    return 0 if all(_alive(pids.get(s)) for s in SERVICES) else 1


def _stop(pid: int | None, grace: float = 15) -> None:
    if not _alive(pid):
        return
    assert pid is not None
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except OSError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if not _alive(pid):
            return


def down(stack: Stack, quiet: bool = False) -> None:
    """Stop the worker, both servers and PostgreSQL, by PID; the data stays."""
    state = stack.state()
    pids = state.get("pids", {})
    for name in ("worker", "prefect", "mlflow"):
        _stop(pids.get(name))
    if (stack.pgdata / "postmaster.pid").exists():
        _pg_run(stack, [_pg_tool("pg_ctl"), "-D", str(stack.pgdata), "-m", "fast", "-w", "stop"])
    if state:
        stack.save({"ports": state.get("ports", {}), "pids": {}})
    if not quiet:
        print(f"services: stopped under {stack.root} (the data stays; make services to start)")


def main(argv: list[str] | None = None) -> int:
    """``python -m paramaudit.app.services up|status|down [--dir DIR]``."""
    p = argparse.ArgumentParser(prog="paramaudit-services", description=__doc__.splitlines()[0])
    p.add_argument("verb", choices=["up", "status", "down"])
    p.add_argument("--dir", type=Path, default=Path(os.environ.get(
        "PARAMAUDIT_SERVICES_DIR", DEFAULT_DIR)), help="the stack's folder (default: %(default)s)")
    args = p.parse_args(argv)
    stack = Stack(args.dir)
    try:
        if args.verb == "up":
            up(stack)
            return 0
        if args.verb == "status":
            return status(stack)
        down(stack)
        return 0
    except UserInputError as err:
        print(f"paramaudit: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
