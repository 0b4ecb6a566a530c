"""Preparing a trial table for ranking: usable rows, and how each hyperparameter column is read.

A column is a number (int or float, log-distributed when it spans many decades), a category
(strings, bools, mixed values) or constant over the usable trials (nothing to rank).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

MIN_TRIALS = 3  # below this no ranking is attempted
LOG_DECADES = 2.0  # a positive column spanning more than this many decades is log-distributed
MISSING = "(missing)"  # the category a missing categorical value becomes


@dataclass(frozen=True)
class _Column:
    """How one hyperparameter column is treated."""

    name: str
    kind: str  # "float", "int", "categorical" or "constant"
    log: bool = False
    choices: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The kind as reported: "log-float"/"log-int" for log-distributed numbers."""
        return f"log-{self.kind}" if self.log else self.kind


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _is_missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, (float, np.floating)) and math.isnan(v))


def _as_category(v: Any) -> str:
    return MISSING if _is_missing(v) else str(v)


def _classify(name: str, values: pd.Series) -> tuple[_Column, pd.Series]:
    """Decide how a hyperparameter column is treated and return its cleaned values."""
    present = [v for v in values.tolist() if not _is_missing(v)]
    numeric = bool(present) and all(_is_number(v) for v in present)
    if numeric:
        nums = pd.to_numeric(values, errors="coerce").astype(float)
        finite = nums[np.isfinite(nums)]
        if finite.empty:
            return _Column(name, "constant"), values.map(_as_category)
        # a missing or infinite value becomes the median: the column stays numeric for both
        # methods (fanova needs every trial to carry every hyperparameter)
        nums = nums.where(np.isfinite(nums), float(finite.median()))
        lo, hi = float(nums.min()), float(nums.max())
        if lo == hi:
            return _Column(name, "constant"), nums
        is_int = bool(np.all(np.mod(nums.to_numpy(), 1.0) == 0.0))
        log = lo > 0 and math.log10(hi / lo) > LOG_DECADES
        if is_int:
            return _Column(name, "int", log=log), nums.astype(np.int64)
        return _Column(name, "float", log=log), nums
    cats = values.map(_as_category)
    choices = tuple(sorted(set(cats.tolist())))
    if len(choices) < 2:
        return _Column(name, "constant"), cats
    return _Column(name, "categorical", choices=choices), cats


def _prepare(trials: pd.DataFrame, score: str) -> tuple[pd.DataFrame, np.ndarray, list[_Column], int]:
    """Usable rows (finite score), their cleaned hyperparameter columns, the score vector, the
    column descriptions and how many rows were dropped."""
    if not isinstance(trials, pd.DataFrame):
        raise TypeError(f"trials must be a pandas DataFrame, not {type(trials).__name__}")
    if score not in trials.columns:
        raise ValueError(f"score column {score!r} not in the trial table (columns: {list(trials.columns)})")
    y_all = pd.to_numeric(trials[score], errors="coerce").astype(float).to_numpy()
    keep = np.isfinite(y_all)
    dropped = int((~keep).sum())
    usable = trials.loc[keep].reset_index(drop=True)
    y = y_all[keep]
    if len(usable) < MIN_TRIALS:
        raise ValueError(
            f"cannot rank hyperparameters: {len(usable)} trial(s) with a finite {score!r} "
            f"({dropped} dropped), at least {MIN_TRIALS} needed"
        )
    columns: list[_Column] = []
    cleaned: dict[str, pd.Series] = {}
    for name in trials.columns:
        if name == score:
            continue
        col, values = _classify(str(name), usable[name])
        columns.append(col)
        cleaned[str(name)] = values
    return pd.DataFrame(cleaned), y, columns, dropped
