"""Presenting a ranking: JSON-ready rows for a table artifact, and one PNG of bars and scatters.

matplotlib is imported only when a plot is drawn, and only its Figure API is used.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from paramaudit.importance.table import _Column, _prepare

if TYPE_CHECKING:
    from matplotlib.axes import Axes

TOP_PLOTTED = 8


def _ranked_for_plot(ranking: pd.DataFrame) -> tuple[list[str], list[float], str]:
    """Names and importances of the ranked hyperparameters, most important first, and the method."""
    ranked = ranking[ranking["rank"].notna()] if "rank" in ranking else ranking
    ranked = ranked.sort_values("importance", ascending=False, kind="stable")
    names = [str(h) for h in ranked["hyperparameter"]]
    importances = [float(v) for v in ranked["importance"]]
    method = str(ranked["method"].iloc[0]) if len(ranked) and "method" in ranked else "?"
    return names, importances, method


def _draw_importance_bars(ax: Axes, names: list[str], importances: list[float],
                          constant: list[str]) -> None:
    """Horizontal importance bars, labelled with their values; the constant ones are named below."""
    ypos = list(range(len(names)))
    ax.barh(ypos, importances, color="#4c72b0")
    ax.set_yticks(ypos, names, fontsize=9)
    ax.invert_yaxis()  # most important on top
    ax.set_xlim(0, max(importances + [0.0]) * 1.15 or 1.0)
    for pos, v in zip(ypos, importances, strict=True):
        ax.text(v, pos, f" {v:.2f}", va="center", fontsize=8)
    xlabel = "importance (sums to 1)"
    if constant:
        listed = ", ".join(constant[:6]) + (f" and {len(constant) - 6} more" if len(constant) > 6 else "")
        xlabel += f"; constant over the trials, not ranked: {listed}"
    ax.set_xlabel(xlabel)


def _scatter_values(sub: Axes, col: _Column, values: pd.Series, y: np.ndarray,
                    rng: np.random.Generator) -> None:
    """One hyperparameter's values against the score: categories jittered, log x if log-distributed."""
    if col.kind == "categorical":
        pos = {c: k for k, c in enumerate(col.choices)}
        xs = np.array([pos[v] for v in values], dtype=float)
        xs = xs + rng.uniform(-0.15, 0.15, size=len(xs))
        sub.set_xticks(range(len(col.choices)), [c[:12] for c in col.choices], fontsize=8,
                       rotation=30 if len(col.choices) > 3 else 0)
        sub.set_xlim(-0.5, len(col.choices) - 0.5)
    else:
        xs = values.to_numpy(dtype=float)
        if col.log:
            sub.set_xscale("log")
    sub.scatter(xs, y, s=14, alpha=0.7, color="tab:orange", edgecolors="none")


def importance_table(ranking: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows of a ranking for a Prefect table artifact (floats rounded to 4 places;
    <NA> becomes None; numpy scalars become Python ones)."""

    def plain(v: Any) -> Any:
        if v is None or v is pd.NA or (isinstance(v, (float, np.floating)) and math.isnan(v)):
            return None
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if isinstance(v, (int, np.integer)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            return round(float(v), 4) if math.isfinite(v) else None
        return str(v) if not isinstance(v, str) else v

    return [{str(k): plain(v) for k, v in row.items()} for row in ranking.to_dict(orient="records")]


def plot_importance(trials: pd.DataFrame, ranking: pd.DataFrame, path: str | Path,
                    score: str = "val_score") -> Path:
    """Write one PNG: the importances as horizontal bars on top, and below them one scatter per
    ranked hyperparameter (the top 8) of its value against ``score`` over all usable trials (log
    x for log-distributed ones; categories spread with a little jitter). Returns the path."""
    import matplotlib

    # Agg only when pyplot is not loaded yet: switching a live interactive backend would disturb
    # the caller. The Figure API below needs no pyplot, so nothing leaks from long-running flows.
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    from matplotlib.figure import Figure

    x, y, columns, dropped = _prepare(trials, score)
    by_name = {c.name: c for c in columns}
    names, importances, method = _ranked_for_plot(ranking)
    shown = [h for h in names if h in by_name][:TOP_PLOTTED]
    share_of = dict(zip(names, importances, strict=True))

    ncols = min(4, max(1, len(shown)))
    nrows = math.ceil(len(shown) / ncols) if shown else 0
    bar_height = max(1.6, 0.3 * len(names) + 0.9)
    fig = Figure(figsize=(3.2 * ncols + 1.5, bar_height + 2.8 * nrows), layout="constrained")
    grid = fig.add_gridspec(1 + nrows, ncols, height_ratios=[bar_height] + [2.8] * nrows)

    ax = fig.add_subplot(grid[0, :])
    _draw_importance_bars(ax, names, importances, [c.name for c in columns if c.kind == "constant"])
    title = f"Hyperparameter importance for {score} ({method}, {len(y)} trials"
    title += f", {dropped} without a finite score left out)" if dropped else ")"
    ax.set_title(title)

    rng = np.random.default_rng(0)  # the jitter is cosmetic; a fixed seed keeps plots stable
    for i, name in enumerate(shown):
        sub = fig.add_subplot(grid[1 + i // ncols, i % ncols])
        _scatter_values(sub, by_name[name], x[name], y, rng)
        share = share_of.get(name, 0.0)
        sub.set_title(f"{name} ({share:.0%})", fontsize=9)
        sub.tick_params(labelsize=8)
        sub.grid(True, alpha=0.3)
        if i % ncols == 0:
            sub.set_ylabel(score, fontsize=8)

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=100)
    return out
