"""Which hyperparameters mattered: rank them by their importance to the val score.

Pure logic over a finished search's trial table plus one plot; no torch, Prefect, MLflow or
Ray here. The input is one row per trial: a column per hyperparameter (numbers, or categories as
strings/bools) and the score column. Nothing here concerns the model's parameters (the weights
training learns); only the hyperparameters a trial was started with.

Methods
-------
``fanova``
    Optuna's fANOVA evaluator on an in-memory study built from the table: the share of the
    score's variance each hyperparameter explains on its own.
``forest``
    a random forest (200 trees) on the hyperparameters (categoricals one-hot encoded inside a
    pipeline), and permutation importance per hyperparameter: the mean drop in R^2 over 10
    shuffles of that hyperparameter's column. A hyperparameter's one-hot columns are shuffled
    together, so nothing needs to be summed back. When every permutation importance is <= 0
    (the forest explains nothing) the impurity importances, summed over each hyperparameter's
    one-hot columns, stand in.
``auto``
    fanova when there are >= 2 varying hyperparameters and >= 4 trials and it succeeds,
    otherwise forest.

Rows with a NaN/inf score (failed or skipped trials) are dropped. Hyperparameters that take a
single value over the usable trials cannot explain anything: they are not ranked but are kept at
the bottom of the result with importance 0, ``rank`` <NA> and ``kind`` "constant". Importances of
the ranked hyperparameters are non-negative and sum to 1. Fewer than 3 usable trials, no varying
hyperparameter or a constant score raise ``ValueError`` with a one-line message.

The ranking itself (choosing a method, normalising, the result's layout) lives here; preparing
the table is :mod:`.table`, the two methods :mod:`.methods`, the table artifact and the plot
:mod:`.views`. The methods are called through this module's names (``_fanova``, ``_forest``) so
that replacing one here, as a test does to make fanova fail, reaches the ranking.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from paramaudit.importance.methods import FOREST_TREES, PERMUTATION_REPEATS, _fanova, _forest
from paramaudit.importance.table import LOG_DECADES, MIN_TRIALS, MISSING, _Column, _prepare
from paramaudit.importance.views import TOP_PLOTTED, importance_table, plot_importance

__all__ = [
    "COLUMNS",
    "FOREST_TREES",
    "LOG_DECADES",
    "METHODS",
    "MIN_FANOVA_TRIALS",
    "MIN_TRIALS",
    "MISSING",
    "PERMUTATION_REPEATS",
    "TOP_PLOTTED",
    "importance_table",
    "plot_importance",
    "rank_hyperparameters",
]

METHODS = ("auto", "fanova", "forest")
MIN_FANOVA_TRIALS = 4  # auto picks fanova from here on (with >= 2 varying hyperparameters)

COLUMNS = ["rank", "hyperparameter", "importance", "method", "n_trials", "kind"]


def _pick_method(method: str, varying: list[_Column], n: int) -> tuple[str, str | None]:
    """The method to try and, when auto does not pick fanova, why (else None)."""
    if method != "auto":
        return method, None
    if len(varying) < 2:
        return "forest", "fewer than 2 varying hyperparameters"
    if n < MIN_FANOVA_TRIALS:
        return "forest", f"fewer than {MIN_FANOVA_TRIALS} trials"
    return "fanova", None


def _raw_importances(x: pd.DataFrame, y: np.ndarray, varying: list[_Column], method: str, seed: int,
                     higher_is_better: bool) -> tuple[dict[str, float], str, str | None]:
    """Unnormalised importances, the method actually used and why auto fell back (or None)."""
    used, fallback = _pick_method(method, varying, len(y))
    if used == "fanova":
        try:
            raw = _fanova(x, y, varying, seed, higher_is_better)
            if sum(v for v in raw.values() if math.isfinite(v) and v > 0) <= 0:
                raise ValueError("it attributed none of the variance")
            return raw, used, fallback
        except Exception as exc:  # any failure of fanova: auto uses the forest, fanova says why
            reason = f"fanova failed: {type(exc).__name__}: {exc}".splitlines()[0]
            if method == "fanova":  # the caller catches ValueError and skips the ranking
                raise ValueError(f"cannot rank hyperparameters: {reason}") from exc
            fallback = reason
    return _forest(x, y, varying, seed), "forest", fallback


def _ranking_rows(raw: dict[str, float], varying: list[_Column], constant: list[_Column], used: str,
                  n: int, score: str) -> list[dict[str, Any]]:
    """Rows of the ranking: the varying hyperparameters by share of importance, then the constant
    ones by name."""
    clipped = {k: (max(0.0, v) if math.isfinite(v) else 0.0) for k, v in raw.items()}
    total = sum(clipped.values())
    if total <= 0:
        raise ValueError(f"cannot rank hyperparameters: {used} attributed none of the variance of {score!r}")
    # ties broken by name so that equal importances always come out in the same order
    order = sorted(varying, key=lambda c: (-clipped[c.name], c.name))
    rows = [
        {"rank": i + 1, "hyperparameter": c.name, "importance": clipped[c.name] / total,
         "method": used, "n_trials": n, "kind": c.label}
        for i, c in enumerate(order)
    ]
    rows += [
        {"rank": pd.NA, "hyperparameter": c.name, "importance": 0.0, "method": used,
         "n_trials": n, "kind": "constant"}
        for c in sorted(constant, key=lambda c: c.name)
    ]
    return rows


def rank_hyperparameters(trials: pd.DataFrame, score: str = "val_score", higher_is_better: bool = False,
                         method: str = "auto", seed: int = 0) -> pd.DataFrame:
    """Rank the hyperparameters by their importance to ``score`` over the trials.

    Returns a DataFrame sorted by importance (descending) with columns ``rank`` (1 = most
    important; <NA> for constant hyperparameters), ``hyperparameter``, ``importance``
    (non-negative, summing to 1 over the ranked ones), ``method`` (the one actually used),
    ``n_trials`` (usable trials) and ``kind`` ("float", "log-float", "int", "log-int",
    "categorical" or "constant"). ``attrs`` carries ``score``, ``dropped_trials``, ``constant``
    (names), and ``fallback`` (why auto did not use fanova, or None).

    ``higher_is_better`` only sets the direction of the optuna study; importance is about how
    much the score varies, not which way. Raises ``ValueError`` (one line) when no ranking is
    possible: fewer than 3 trials with a finite score, no varying hyperparameter, a constant score
    or an unknown method.
    """
    if method not in METHODS:
        raise ValueError(f"unknown importance method {method!r}; use one of {', '.join(METHODS)}")
    x, y, columns, dropped = _prepare(trials, score)
    varying = [c for c in columns if c.kind != "constant"]
    constant = [c for c in columns if c.kind == "constant"]
    n = len(y)
    if not varying:
        raise ValueError(f"cannot rank hyperparameters: none varies over the {n} usable trials")
    if float(np.ptp(y)) == 0.0:
        raise ValueError(f"cannot rank hyperparameters: {score!r} is the same in all {n} usable trials")

    raw, used, fallback = _raw_importances(x, y, varying, method, seed, higher_is_better)
    rows = _ranking_rows(raw, varying, constant, used, n, score)
    out = pd.DataFrame(rows, columns=COLUMNS)
    out["rank"] = out["rank"].astype("Int64")
    out["importance"] = out["importance"].astype(float)
    out["n_trials"] = out["n_trials"].astype(int)
    out.attrs.update(score=score, dropped_trials=dropped, constant=[c.name for c in constant],
                     fallback=fallback)
    return out
