"""Prefect deployment steps (prefect.yaml) that find the paramaudit checkout on a worker.

A deployment runs `flows/...` from a checkout, and each worker machine may keep its checkout
somewhere else. `record_checkout` is a build step: it runs at deploy time and notes the folder the
deployment was deployed from. `locate_checkout` is a pull step: it runs on the worker when a flow
run starts, in the flow run's own process, before the flow is imported, and takes the first of

1. `PARAMAUDIT_HOME`, when set: an explicit override that is wrong fails, it never falls back;
2. the checkout this paramaudit package is installed from (an editable install, `make install`):
   the code the flow will import, so the flows beside it match it;
3. the folder the deployment was deployed from, when it is a checkout on this machine too;
4. the worker's working directory (Prefect 3.9 starts each flow run in a fresh temporary folder,
   so it is read from the worker process, the flow run's parent).

When none is a checkout the flow run is set to Failed, with the reason and the fix as its state
message (the worker's later "Crashed" proposal cannot replace a terminal state: Prefect's
HandleFlowTerminalStateTransitions aborts it), and the step raises, so the process exits non-zero.

Prefect is imported only to report a flow run's state and logs, never at import time.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

if TYPE_CHECKING:
    from prefect.logging.loggers import PrefectLogAdapter

HOME_ENV = "PARAMAUDIT_HOME"
FLOW_RUN_ENV = "PREFECT__FLOW_RUN_ID"  # set by Prefect in every flow-run process
MARKER = Path("flows") / "pipeline.py"  # what makes a folder a paramaudit checkout
MAX_SHOWN = 160  # characters of a path in a message (a path from the environment is input)
FIX = ("start the worker in the checkout (cd /path/to/paramaudit && prefect worker start "
       f"--pool paramaudit-pool) or set {HOME_ENV}=/path/to/paramaudit on the worker")


class CheckoutNotFound(RuntimeError):
    """No paramaudit checkout on this worker; the message says why and what to do."""


@dataclass(frozen=True)
class Checkout:
    """A checkout found, and which rule found it."""

    directory: Path
    found_by: str


def is_checkout(folder: Path) -> bool:
    """The folder holds a paramaudit checkout (its flows/pipeline.py)."""
    try:
        return (folder / MARKER).is_file()
    except (OSError, ValueError):  # unreadable, a name too long, an embedded NUL
        return False


def _show(path: str | Path) -> str:
    """A path as one short printable line."""
    text = "".join(c if c.isprintable() else "?" for c in str(path))
    if len(text) <= MAX_SHOWN:
        return text
    half = (MAX_SHOWN - 3) // 2
    return f"{text[:half]}...{text[-half:]}"


def _resolved(folder: Path) -> Path:
    try:
        return folder.resolve()
    except (OSError, RuntimeError):  # a symlink loop: keep it as given
        return folder


def _recorded(deployed_from: str | None) -> Path | None:
    """The deploy-time folder, unless the deployment did not record one."""
    if not deployed_from or "{{" in deployed_from:  # a placeholder nothing filled in
        return None
    return Path(deployed_from)


def find_checkout(*, home: str | None, package_root: Path | None, deployed_from: str | None,
                  worker_dir: Path | None) -> Checkout:
    """The checkout to run in, by the rules in this module's docstring (raises CheckoutNotFound).

    home is PARAMAUDIT_HOME as set (empty counts as unset); a relative one is taken from the
    worker's working directory, where whoever set it stood.
    """
    if home is not None and home.strip():
        folder = Path(home).expanduser()
        if not folder.is_absolute() and worker_dir is not None:
            folder = worker_dir / folder
        if is_checkout(folder):
            return Checkout(_resolved(folder), HOME_ENV)
        raise CheckoutNotFound(
            f"{HOME_ENV}={_show(home)} is not a paramaudit checkout (no {MARKER} in it): set it "
            "to the checkout's folder on this worker, or unset it to let the worker find one")
    candidates = (("the installed paramaudit package", package_root),
                  ("the folder it was deployed from", _recorded(deployed_from)),
                  ("the worker's working directory", worker_dir))
    tried = []
    for label, folder in candidates:
        if folder is not None and is_checkout(folder):
            return Checkout(_resolved(folder), label)
        tried.append(f"{label} ({'unknown' if folder is None else _show(folder)})")
    raise CheckoutNotFound(
        f"cannot find the paramaudit checkout on this worker: no {MARKER} in {', '.join(tried)}; "
        f"{FIX}")


def package_root() -> Path:
    """The folder above the paramaudit package: the checkout when it is installed editable."""
    return Path(__file__).resolve().parents[2]


def worker_directory() -> Path | None:
    """The working directory of the worker: its process's (the parent's), else its PWD."""
    try:
        return Path(os.readlink(f"/proc/{os.getppid()}/cwd"))  # Linux
    except OSError:
        pwd = os.environ.get("PWD")
        return Path(pwd) if pwd else None


def record_checkout() -> dict[str, str]:
    """Build step, at deploy time: the folder `prefect deploy` runs in (it holds prefect.yaml)."""
    return {"directory": str(_resolved(Path.cwd()))}


def locate_checkout(deployed_from: str | None = None) -> dict[str, str]:
    """Pull step, on the worker: the checkout as `directory` (fails the flow run when none)."""
    flow_run_id = _flow_run_id()
    try:
        found = find_checkout(home=os.environ.get(HOME_ENV), package_root=package_root(),
                              deployed_from=deployed_from, worker_dir=worker_directory())
    except CheckoutNotFound as err:
        if flow_run_id is not None:
            fail_flow_run(flow_run_id, str(err))
        raise
    if flow_run_id is not None:
        _logger(flow_run_id).info("paramaudit checkout %s (%s)", found.directory, found.found_by)
    return {"directory": str(found.directory)}


def _flow_run_id() -> UUID | None:
    try:
        return UUID(os.environ.get(FLOW_RUN_ENV, ""))
    except ValueError:
        return None


def _logger(flow_run_id: UUID) -> PrefectLogAdapter:
    from prefect.logging.loggers import flow_run_logger

    return flow_run_logger(flow_run_id=flow_run_id)


def fail_flow_run(flow_run_id: UUID, message: str) -> bool:
    """Set the flow run to Failed with message as its state message; True when the server took it.

    Not forced: a run already final (cancelled meanwhile) keeps its state. Never raises: the
    caller fails anyway, and the worker still reports the run.
    """
    from prefect import get_client
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.states import Failed

    try:
        _logger(flow_run_id).error(message)
        with get_client(sync_client=True) as client:
            result = client.set_flow_run_state(flow_run_id, Failed(message=message))
    except Exception as err:  # reporting must not hide the reason it reports
        print(f"paramaudit: could not mark flow run {flow_run_id} Failed: {err}", file=sys.stderr)
        return False
    return result.status == SetStateStatus.ACCEPT
