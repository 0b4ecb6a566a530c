"""The later steps' imports, started early in a thread while the machine's other core waits."""

from __future__ import annotations

import importlib
import threading

# imported by the search (Ray Tune, in this process the driver), final training (torch's
# optimizers import torch._dynamo when first built) and publishing (the model's MLflow flavour,
# the plots)
_LATER_IMPORTS = ("ray.tune", "torch._dynamo", "mlflow.pytorch")
_prefetching: list[threading.Thread] = []
_prefetch_lock = threading.Lock()


def _prefetch() -> None:
    for name in _LATER_IMPORTS:
        importlib.import_module(name)
    importlib.import_module("matplotlib").use("Agg")
    importlib.import_module("matplotlib.pyplot")


def prefetch_for_later_steps() -> threading.Thread:
    """Import what the search, training and publishing need, in a thread; once per process.

    These imports (about 2.5 s here) would otherwise run in the steps, one after another, while
    the machine's other cores wait. The CLI starts this as soon as the flow is imported, so they
    overlap the flow run's creation and the search; a flow run started another way (a
    deployment) starts it in the search step. An import that fails here fails again, with its
    own error, where the step needs it.
    """
    def run() -> None:
        try:
            _prefetch()
        except Exception:  # the step that needs the module imports it again and reports
            return

    with _prefetch_lock:
        if not _prefetching:
            thread = threading.Thread(target=run, name="paramaudit-prefetch", daemon=True)
            thread.start()
            _prefetching.append(thread)
        return _prefetching[0]
