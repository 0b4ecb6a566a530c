"""Progress for the person at the terminal, and the wall seconds of each step."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

# The step timings of the last flow run in this process, for the CLI's ``--timings`` file: a
# measurement of this machine, not a result of the run, so it is kept out of the summary (and of
# the Prefect result) and handed over here instead.
LAST_FLOW_TIMINGS: dict[str, float] = {}


def say(msg: str) -> None:
    """One progress line, flushed (Prefect's log_prints turns it into a flow-run log line)."""
    print(msg, flush=True)


class Timer:
    """Wall seconds per named step, for the benchmark's phase split."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - start, 3)
