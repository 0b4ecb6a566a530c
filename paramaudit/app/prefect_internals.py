"""The one place paramaudit reaches into Prefect's internals, and why no public API serves.

Each use names the Prefect versions it was written and tested for (``TESTED``); on another
version ``check_version`` says so once, and each patch checks that what it replaces is still
there before it touches it (tests/unit/test_prefect_internals.py fails when it is not).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import version
from typing import Any

from paramaudit.versions import in_range

TESTED = ((3, 4), (4, 0))  # from 3.4 up to, not including, 4.0
_warned: list[bool] = []


def _release() -> str:
    return version("prefect")


def check_version() -> bool:
    """True on a Prefect release these patches were tested with; else warn once and say False."""
    low, high = TESTED
    ok = in_range(_release(), TESTED)
    if not ok and not _warned:
        _warned.append(True)
        warnings.warn(f"paramaudit was tested with Prefect >= {low[0]}.{low[1]}, < {high[0]}.{high[1]}, "
                      f"not {version('prefect')}: Ctrl-C and SIGTERM may be handled by Prefect "
                      "instead", RuntimeWarning, stacklevel=2)
    return ok


@contextlib.contextmanager
def sigterm_left_to_caller() -> Iterator[bool]:
    """While a flow runs in this process: Prefect's flow engine does not take SIGTERM over.

    Prefect's engine puts a handler on SIGTERM for the whole flow run that raises its
    TerminationSignal wherever the main thread is (inside an import, or inside the cleanup of a
    first stop: a second SIGTERM then leaves MLflow runs RUNNING), and re-sends the signal after
    its crash handling. The CLI handles SIGTERM itself (paramaudit.stopping), and Prefect's
    engine marks the flow run Crashed on the KeyboardInterrupt that raises, as it does on Ctrl-C.
    Prefect has no setting for it: ``prefect.flow_engine.capture_sigterm`` is held back for the
    flow run. Yields whether it was (not on an untested release, or where the name is gone).
    """
    from prefect import flow_engine

    original = getattr(flow_engine, "capture_sigterm", None)
    if original is None or not check_version():
        yield False
        return
    flow_engine.capture_sigterm = contextlib.nullcontext  # type: ignore[attr-defined]
    try:
        yield True
    finally:
        flow_engine.capture_sigterm = original  # type: ignore[attr-defined]


def ephemeral_app_factory() -> Callable[[], Any]:
    """Prefect's server application, imported now and built when the returned call is made.

    ``prefect.server.api.server.create_app`` is what ``prefect server start`` serves; Prefect
    documents no app factory to run its server under another uvicorn command, and that command
    is what lets the CLI start the server before its own heavy imports (app/prefect_server.py).
    ``ephemeral=True`` starts the services a flow run needs with it; ``final=True``: no other
    app wraps it. The import is the slow part, so it happens here, before a gated server waits.
    """
    check_version()
    from prefect.server.api.server import create_app

    return functools.partial(create_app, ephemeral=True, final=True)
