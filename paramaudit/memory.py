"""Memory measured while the final model trains, to set beside the audit's estimate.

On a GPU: the peak memory torch allocated on it during training. On the CPU: the process's
peak resident set during training above what it held when training began (Linux: the kernel's
high-water mark, reset at the start through /proc/self/clear_refs). The estimate counts weights,
gradients and optimizer state; the measurement adds activations, batches and the allocator's
slack, so it is the larger of the two, and the gap says how much the estimate leaves out.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_high_water_mark() -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+); False where the kernel does not allow it."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    hwm, rss = _status_kib("VmHWM"), _status_kib("VmRSS")
    return hwm is not None and rss is not None and hwm <= rss + 1024  # reset took effect


@contextmanager
def measured_peak(device: Any) -> Iterator[dict[str, Any]]:
    """Yield a dict that, after the block, holds ``peak_bytes`` and what it measured.

    ``peak_bytes`` stays None where nothing could be measured (no /proc: not Linux).
    """
    import torch

    out: dict[str, Any] = {"device": str(device), "peak_bytes": None, "measure": ""}
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        yield out
        torch.cuda.synchronize()
        out.update(peak_bytes=int(torch.cuda.max_memory_allocated() - base),
                   measure="peak allocated on the GPU during training, above what it held before")
        return
    start = _status_kib("VmRSS")
    reset = _reset_high_water_mark()
    yield out
    peak = _status_kib("VmHWM")
    if start is not None and peak is not None and reset:
        out.update(peak_bytes=max(0, peak - start) * 1024,
                   measure="peak resident memory of the process during training, above what it "
                           "held before")
    elif peak is not None:
        # no reset: the process's lifetime peak, which may predate training
        out.update(peak_bytes=peak * 1024, measure="peak resident memory of the process so far "
                                                   "(the kernel would not reset its high-water "
                                                   "mark)")
