"""Capacity against generalisation across the search's trials.

Each trial of the hyperparameter search trains a model with some number of trainable
parameters; this module asks which trials give the lowest val loss for their size (the Pareto
front) and from what size on the generalisation gap (val loss - train loss) starts to grow.
Trials with a non-finite train or val loss (failed trials) take no part in either, but are
listed in the summary table.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes


@dataclass(frozen=True)
class TrialPoint:
    """One search trial: its size, final losses and accuracies, and its hyperparameters."""

    trial_id: str
    params_trainable: int
    train_loss: float
    val_loss: float
    train_accuracy: float | None = None
    val_accuracy: float | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    @property
    def gap(self) -> float:
        """val loss - train loss (NaN for a failed trial)."""
        return self.val_loss - self.train_loss if self.finite else math.nan

    @property
    def finite(self) -> bool:
        """Whether both losses are finite, i.e. the trial did not fail."""
        try:
            return math.isfinite(self.train_loss) and math.isfinite(self.val_loss)
        except TypeError:
            return False


def _usable(points: Sequence[TrialPoint]) -> list[TrialPoint]:
    return [p for p in points if p.finite]


def pareto_front(points: Sequence[TrialPoint]) -> list[TrialPoint]:
    """The trials no other trial dominates (<= parameters and <= val loss, one strictly),
    sorted by parameter count: the fewest parameters for a given val loss.

    Exact duplicates (same count, same val loss) dominate neither, so both stay. Failed trials
    are left out. O(n^2), which is nothing at search sizes.
    """
    usable = _usable(points)
    front = [
        p
        for p in usable
        if not any(
            q.params_trainable <= p.params_trainable
            and q.val_loss <= p.val_loss
            and (q.params_trainable < p.params_trainable or q.val_loss < p.val_loss)
            for q in usable
        )
    ]
    return sorted(front, key=lambda p: (p.params_trainable, p.val_loss, p.trial_id))


def gap_onset(
    points: Sequence[TrialPoint], *, factor: float = 2.0, min_rise: float = 0.02
) -> dict[str, Any] | None:
    """The parameter count from which the gap (val loss - train loss) grows, or None.

    Method: group the finite trials by parameter count and take each count's median gap
    (trials of one architecture share a count). The baseline is the median gap over the
    smallest third of the counts (at least one). The threshold is
    ``baseline + max((factor - 1) * |baseline|, min_rise)``: a multiple of the small models'
    gap, with an absolute floor ``min_rise`` (in loss units) so that a near-zero baseline does
    not turn noise into an onset. The onset is the smallest count above the baseline counts
    whose own median gap is above the threshold and for which the median gap over all counts
    from it upward is also above it, so a single outlier does not make an onset, a sustained
    rise does. Needs at least three distinct counts.

    Returns ``{"params", "gap_before", "gap_after", "threshold", "message"}``, where gap_before
    and gap_after are the median gaps of the trials below and at-or-above the onset.
    """
    usable = _usable(points)
    by_count: dict[int, list[float]] = {}
    for p in usable:
        by_count.setdefault(p.params_trainable, []).append(p.gap)
    counts = sorted(by_count)
    if len(counts) < 3:
        return None
    level_gap = [statistics.median(by_count[c]) for c in counts]
    n_base = max(1, len(counts) // 3)
    baseline = statistics.median(level_gap[:n_base])
    threshold = baseline + max((factor - 1) * abs(baseline), min_rise)
    for i in range(n_base, len(counts)):
        if level_gap[i] > threshold and statistics.median(level_gap[i:]) > threshold:
            onset = counts[i]
            before = statistics.median(p.gap for p in usable if p.params_trainable < onset)
            after = statistics.median(p.gap for p in usable if p.params_trainable >= onset)
            return {
                "params": onset,
                "gap_before": before,
                "gap_after": after,
                "threshold": threshold,
                "message": (
                    f"the generalisation gap (val loss - train loss) grows from a median "
                    f"{before:.3f} below {onset:,} trainable parameters to {after:.3f} at or "
                    f"above it (threshold {threshold:.3f}, from the smallest models' gap "
                    f"{baseline:.3f})"
                ),
            }
    return None


def summary_table(points: Sequence[TrialPoint], chosen_id: str | None) -> list[dict[str, Any]]:
    """One row per trial, failed ones included, sorted by parameter count: trial_id,
    params_trainable, train_loss, val_loss, gap, on_pareto_front, chosen."""
    front = {id(p) for p in pareto_front(points)}
    rows = [
        {
            "trial_id": p.trial_id,
            "params_trainable": p.params_trainable,
            "train_loss": p.train_loss,
            "val_loss": p.val_loss,
            "gap": p.gap,
            "on_pareto_front": id(p) in front,
            "chosen": chosen_id is not None and p.trial_id == chosen_id,
        }
        for p in points
    ]
    return sorted(rows, key=lambda r: (r["params_trainable"], str(r["trial_id"])))


def _draw_pareto_front(ax: Axes, usable: Sequence[TrialPoint], right_edge: int) -> None:
    """The Pareto front of val loss as a step line, its trials ringed."""
    front = pareto_front(usable)
    # the step runs on to the largest trial: it reads as the best val loss reachable with
    # at most that many parameters, and stays visible when the front is a single point
    fx = [p.params_trainable for p in front] + [right_edge]
    fy = [p.val_loss for p in front] + [front[-1].val_loss]
    ax.plot(fx, fy, drawstyle="steps-post", color="tab:green", linewidth=1.5,
            label="Pareto front (val loss)", zorder=2)
    ax.scatter(fx[:-1], fy[:-1], marker="o", s=90, facecolors="none",
               edgecolors="tab:green", linewidths=1.5, zorder=3)


def _draw_trials(ax: Axes, usable: Sequence[TrialPoint], chosen_id: str | None) -> None:
    """Losses of the finite trials, the Pareto front, the chosen trial and the gap onset."""
    xs = [p.params_trainable for p in usable]
    # a gap bar per trial links its two markers, so which train loss belongs to which val
    # loss stays readable when trials share a size
    ax.vlines(xs, [p.train_loss for p in usable], [p.val_loss for p in usable],
              colors="0.8", linewidth=1, zorder=1)
    ax.scatter(xs, [p.train_loss for p in usable], marker="o", facecolors="none",
               edgecolors="tab:blue", label="train loss", zorder=2)
    ax.scatter(xs, [p.val_loss for p in usable], marker="o", color="tab:orange",
               label="val loss", zorder=3)
    _draw_pareto_front(ax, usable, max(xs))
    chosen = [p for p in usable if chosen_id is not None and p.trial_id == chosen_id]
    if chosen:
        ax.scatter([p.params_trainable for p in chosen], [p.val_loss for p in chosen],
                   marker="*", s=250, color="tab:red", edgecolors="black",
                   label=f"chosen ({chosen_id})", zorder=4)
    onset = gap_onset(usable)
    if onset is not None:
        ax.axvline(onset["params"], linestyle="--", color="tab:purple",
                   label=f"gap onset ({onset['params']:,} parameters)")
    # log scale cannot show a zero count; symlog keeps such a trial visible
    if min(xs) > 0:
        ax.set_xscale("log")
    else:
        ax.set_xscale("symlog", linthresh=1)
    ax.legend(loc="best", fontsize="small")


def plot_capacity(
    points: Sequence[TrialPoint], chosen_id: str | None, path: str | Path
) -> Path:
    """Write a PNG of train and val loss against trainable parameters (log x), with the
    Pareto front, the chosen trial and the gap onset (dashed) marked. Returns the path."""
    import matplotlib

    matplotlib.use("Agg")  # headless: runs inside flows and workers with no display
    from matplotlib.figure import Figure

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    usable = _usable(points)
    failed = len(points) - len(usable)

    # Figure rather than pyplot: no global figure registry to leak from long-running flows
    fig = Figure(figsize=(8, 5), dpi=100)
    ax = fig.add_subplot()
    if usable:
        _draw_trials(ax, usable, chosen_id)
    else:
        ax.text(0.5, 0.5, "no trial finished with finite losses", ha="center", va="center",
                transform=ax.transAxes)
    title = "Capacity vs generalisation across trials"
    if failed:
        title += f" ({failed} failed trial{'s' if failed > 1 else ''} not shown)"
    ax.set_title(title)
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("loss")
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, format="png")
    return out
