"""The rules that read the learning curves alone: divergence, gap, loss ratio, non-finite loss.

``divergence`` also runs inside Ray Tune trials after every epoch (StopRule), so this module
imports nothing beyond the standard library.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from paramaudit.overfit.curves import Curves, _above, _finite
from paramaudit.overfit.verdict import Reason, Severity

# ---------------------------------------------------------------------------- divergence


def _divergence_numbers(
    train_loss: Sequence[float], val_loss: Sequence[float], tolerance: float, k: int
) -> dict[str, float] | None:
    if len(train_loss) != len(val_loss):
        raise ValueError(
            f"divergence: train_loss has {len(train_loss)} epochs, val_loss {len(val_loss)}"
        )
    if k < 1:
        raise ValueError(f"divergence: k must be >= 1, got {k}")
    if not tolerance >= 0:
        raise ValueError(f"divergence: tolerance must be >= 0, got {tolerance}")
    # the minimum over the curve seen so far: on a partial curve (the Tune stopper) this is the
    # running minimum, and a later new minimum resets the count, so a temporary bump that the
    # model recovers from never counts against it
    best: int | None = None
    for i, v in enumerate(val_loss):
        if _finite(v) and (best is None or v < val_loss[best]):
            best = i
    if best is None or not _finite(train_loss[best]):
        return None
    vmin, tmin = val_loss[best], train_loss[best]
    limit = vmin + tolerance * abs(vmin)
    run = longest = 0
    run_end = longest_end = best
    for i in range(best + 1, len(val_loss)):
        v, t = val_loss[i], train_loss[i]
        # non-finite epochs break the run: they are the non_finite rule's business
        if _finite(v) and _finite(t) and _above(v, limit) and t < tmin:
            run += 1
            run_end = i
            if run > longest:
                longest, longest_end = run, run_end
        else:
            run = 0
    if longest < k:
        return None
    worst_i = max(range(longest_end - longest + 1, longest_end + 1), key=lambda j: val_loss[j])
    rise = (val_loss[worst_i] - vmin) / abs(vmin) if vmin != 0 else math.inf
    return {
        "best_epoch": float(best),
        "val_loss_min": float(vmin),
        "worst_epoch": float(worst_i),
        "val_loss_worst": float(val_loss[worst_i]),
        "relative_rise": float(rise),
        "tolerance": float(tolerance),
        "train_loss_at_min": float(tmin),
        "train_loss_last": float(train_loss[longest_end]),
        "last_epoch": float(longest_end),
        "epochs": float(longest),
        "k": float(k),
    }


def _divergence_message(n: dict[str, float]) -> str:
    return (
        f"divergence: val loss rose to {n['val_loss_worst']:.3f} at epoch "
        f"{int(n['worst_epoch']) + 1}, {n['relative_rise']:.1%} above its minimum "
        f"{n['val_loss_min']:.3f} at epoch {int(n['best_epoch']) + 1} (> tolerance "
        f"{n['tolerance']:.1%}), while train loss fell from {n['train_loss_at_min']:.3f} to "
        f"{n['train_loss_last']:.3f}, for {int(n['epochs'])} consecutive epochs "
        f"(>= {int(n['k'])}): training went past its best point"
    )


def divergence(
    train_loss: Sequence[float], val_loss: Sequence[float], tolerance: float, k: int
) -> str | None:
    """The divergence reason text, or None when val loss has not diverged.

    Fires when, after the minimum val loss so far (epoch m), at least ``k`` consecutive epochs
    have val loss more than ``tolerance`` (relative) above that minimum and train loss below
    its value at m. Works on partial curves (fewer than k + 1 epochs never fire) and is O(n)
    with no allocation beyond a few floats, so a Tune stopper may call it every epoch.
    """
    numbers = _divergence_numbers(train_loss, val_loss, tolerance, k)
    return None if numbers is None else _divergence_message(numbers)


# ------------------------------------------------------------------------ the verdict only


def _non_finite(curves: Curves) -> Reason | None:
    bad = [
        (i, name, value)
        for name, series in (("train", curves.train_loss), ("val", curves.val_loss))
        for i, value in enumerate(series)
        if not _finite(value)
    ]
    if not bad:
        return None
    bad.sort()
    i, name, value = bad[0]
    epochs = sorted({b[0] for b in bad})
    more = f" ({len(epochs)} epochs affected)" if len(epochs) > 1 else ""
    return Reason(
        "non_finite",
        "warn",
        f"non-finite loss at epoch {i + 1} ({name} loss {value}){more}: training was numerically "
        "unstable",
        {"epoch": float(i), "epochs_affected": float(len(epochs))},
    )


def _gap(curves: Curves, e: int, max_gap: float) -> Reason | None:
    """train score - val score at epoch ``e`` (accuracy; R² against max_r2_gap, a regression)."""
    tr, va = curves.scores("train")[e], curves.scores("val")[e]
    if not (_finite(tr) and _finite(va)):
        return None
    tr, va = float(tr), float(va)
    gap = tr - va
    limit = "max_r2_gap" if curves.regression else "max_gap"
    if _above(gap, max_gap):
        severity: Severity = "overfit"
        cmp = f"> {limit} {max_gap:.3f}"
    elif _above(gap, max_gap / 2):
        severity = "warn"
        cmp = f"> {limit}/2 {max_gap / 2:.3f} ({limit} {max_gap:.3f})"
    else:
        return None
    key = "r2" if curves.regression else "accuracy"
    name = curves.score_name
    return Reason(
        "gap",
        severity,
        f"generalisation gap at epoch {e + 1}: train {name} {tr:.3f} - val {name} {va:.3f} "
        f"= {gap:.3f} {cmp}",
        {"epoch": float(e), f"train_{key}": tr, f"val_{key}": va, "gap": gap, limit: max_gap},
    )


def _loss_ratio(curves: Curves, e: int, max_ratio: float | None) -> Reason | None:
    if max_ratio is None:
        return None
    tr, va = curves.train_loss[e], curves.val_loss[e]
    if not (_finite(tr) and _finite(va)) or va <= 0:
        return None
    tr, va = float(tr), float(va)
    ratio = va / tr if tr > 0 else math.inf
    if not _above(ratio, max_ratio):
        return None
    return Reason(
        "loss_ratio",
        "overfit",
        f"loss ratio at epoch {e + 1}: val loss {va:.4f} / train loss {tr:.4f} = {ratio:.2f} "
        f"> max_loss_ratio {max_ratio:.2f}",
        {"epoch": float(e), "train_loss": tr, "val_loss": va, "ratio": ratio,
         "max_loss_ratio": max_ratio},
    )
