"""MLflow writes queued to one background thread, in order, none lost or hidden."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


class WriteBehind:
    """MLflow writes done in order on one background thread; callers only queue them.

    Ray Tune calls its callbacks on its event loop, so a write made there (create a trial's run,
    log its record: 15-30 ms each on sqlite) is time every trial slot waits for. Queued, the
    loop goes on and the writes happen while it waits for the next result. ``flush`` waits until
    everything queued is written and raises the first write error: none is lost or hidden. After
    an error, later writes are dropped (they may depend on the failed one) and ``submit`` raises
    it too. The thread starts with the first write; a pickled copy (Ray Tune saves its
    callbacks with its state) is a new, empty writer.
    """

    def __init__(self, name: str = "paramaudit-mlflow-writer") -> None:
        self._name = name
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (WriteBehind, (self._name,))

    def _run(self) -> None:
        while (write := self._queue.get()) is not None:
            try:
                if self._error is None:
                    write()
            except BaseException as err:  # kept, and raised to the caller by flush/submit
                self._error = err
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, write: Callable[[], None]) -> None:
        """Queue one write (a call that takes no arguments)."""
        self._raise()
        if self._closed:
            raise RuntimeError("the MLflow writer is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        self._queue.put(write)

    def flush(self) -> None:
        """Wait until every queued write is done; raise the first one that failed."""
        self._queue.join()
        self._raise()

    def close(self) -> None:
        """Finish the queued writes and stop the thread (errors: ``flush`` raises them)."""
        self._closed = True
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
