"""The target column: the task it implies, its classes or regression values, and their checks.

Rows without a target value are dropped and counted (``row_counts``), and what is left holds
at most ``MAX_CLASSES`` classes of at least ``MIN_PER_CLASS`` rows each; class names are the
file's own values (strings, yes/no, booleans, integers). Or, with ``task: regression`` (or
``auto`` on a float target or a many-valued integer one: :func:`resolve_task`), a numeric
target read as float64, not constant.
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np
import pandas as pd

from paramaudit.config import quote
from paramaudit.data.columns import missing_to_na
from paramaudit.data.preprocess import dataset_task
from paramaudit.data.read import MAX_COLUMN_NAME, Dataset, data_label
from paramaudit.errors import DataError

MIN_PER_CLASS = 3  # one sample each for train, val and test under a stratified split
MAX_CLASSES = 100  # more distinct target values than this is not a set of classes
# task: auto reads integers as a regression target above this many distinct values, when they
# are also more than REGRESSION_SHARE of the rows (ages 18..90 in 1,000 rows: regression; 50
# classes in 100,000 rows: classification); more than MAX_CLASSES is a regression whatever the
# rows. A float target with a non-integer value is a regression.
REGRESSION_DISTINCT = 20
REGRESSION_SHARE = 0.05
MIN_REGRESSION_ROWS = 10  # a regression's three splits, each with 2+ rows, and some to learn on


def resolve_task(labels: pd.Series, task: str = "auto") -> str:
    """``task: auto``'s choice for these target values (present ones only), or ``task`` as it is.

    Regression for a numeric (not boolean) target with a non-integer value, or integers with
    more than REGRESSION_DISTINCT distinct values that are also more than REGRESSION_SHARE of
    the rows (or more than MAX_CLASSES); classification for text, booleans and few integers.
    """
    if task != "auto":
        return task
    if pd.api.types.is_bool_dtype(labels) or not pd.api.types.is_numeric_dtype(labels):
        return "classification"
    present = labels.dropna()
    if pd.api.types.is_float_dtype(present) and not bool((present == present.round()).all()):
        return "regression"
    distinct = int(present.nunique())
    many = distinct > REGRESSION_DISTINCT and distinct > REGRESSION_SHARE * len(present)
    return "regression" if many or distinct > MAX_CLASSES else "classification"


def _present(frame: pd.DataFrame, target: str, shown: str) -> tuple[pd.Series, np.ndarray | None]:
    """The target's values on the rows that have one (and which rows those are: None for all),
    once the column is there."""
    if frame.shape[0] == 0:
        raise DataError(f"data file {shown!r}: a header but no rows")
    if target not in frame.columns:
        hint = difflib.get_close_matches(target, [str(c) for c in frame.columns], n=1
                                         ) if len(target) <= MAX_COLUMN_NAME else []
        extra = f" (did you mean {quote(hint[0])}?)" if hint else ""
        raise DataError(f"data file {shown!r}: target column {quote(target)} not found{extra}")
    if frame.shape[1] < 2:
        raise DataError(f"data file {shown!r}: no feature columns besides the target {target!r}")
    labels = frame[target]
    missing = missing_to_na(labels)[0].isna().to_numpy()
    if missing.all():
        raise DataError(f"data file {shown!r}: target column {quote(target)} is all missing")
    keep = ~missing if missing.any() else None
    if keep is not None:
        labels = labels[keep]
    return labels.reset_index(drop=True), keep


def _regression_target(labels: pd.Series, target: str, shown: str) -> pd.Series:
    """A regression target as float64: numbers only, not all the same."""
    if pd.api.types.is_bool_dtype(labels) or not pd.api.types.is_numeric_dtype(labels):
        kind = "true/false" if pd.api.types.is_bool_dtype(labels) else "text"
        raise DataError(
            f"data file {shown!r}: task: regression needs a numeric target, but target column "
            f"{quote(target)} is {kind}; set task: classification (or auto), or name a numeric "
            "column")
    y = labels.astype(np.float64)
    if not np.isfinite(y.to_numpy()).all():
        raise DataError(f"data file {shown!r}: target column {quote(target)} has infinite values")
    if len(y) < MIN_REGRESSION_ROWS:
        raise DataError(f"data file {shown!r}: {len(y)} rows with a target; a regression needs "
                        f"at least {MIN_REGRESSION_ROWS}")
    if y.nunique() < 2:
        raise DataError(f"data file {shown!r}: target column {quote(target)} is constant; "
                        "nothing to regress")
    return y


def target_labels(frame: pd.DataFrame, target: str, shown: str, task: str = "auto",
            ) -> tuple[pd.Series, np.ndarray | None, str]:
    """The target's values on the rows that have one, which rows those are (None: all), and
    the task (``task: auto`` resolved): a plausible set of classes, or a numeric target."""
    labels, keep = _present(frame, target, shown)
    task = resolve_task(labels, task)
    if task == "regression":
        return _regression_target(labels, target, shown), keep, task
    present = labels.dropna()
    if pd.api.types.is_float_dtype(labels) and bool((present == present.round()).all()):
        labels = labels.astype(np.int64)  # integers pandas read as floats: 1, not 1.0
    n_classes, n_rows = int(labels.nunique()), len(labels)
    if n_classes < 2:  # before the features' work, and whatever becomes of them
        raise DataError(f"data file {shown!r}: the target has one class; need at least two")
    if n_classes > MAX_CLASSES or (n_classes > n_rows / 2 and n_classes > 2):
        raise DataError(
            f"data file {shown!r}: target column {target!r} has {n_classes} distinct values in "
            f"{n_rows} rows, too many to be classes (at most {MAX_CLASSES}, {MIN_PER_CLASS}+ rows "
            "each; a continuous value or an identifier?); set task: regression for a numeric "
            "target, bin it into classes or name the label column"
        )
    return labels, keep, task


def class_order(labels: pd.Series) -> list[Any]:
    """Numbers (also written as text) in numeric order (0, 1, 2, ..., 10), the rest as text."""
    uniques = labels.unique().tolist()
    if pd.api.types.is_numeric_dtype(labels) or pd.api.types.is_bool_dtype(labels):
        return sorted(uniques)
    as_numbers = pd.to_numeric(pd.Series(uniques, dtype=object), errors="coerce")
    if as_numbers.notna().all():
        return [u for _, u in sorted(zip(as_numbers.tolist(), uniques, strict=True),
                                     key=lambda p: (p[0], str(p[1])))]
    return sorted(uniques, key=str)


def check_dataset(ds: Dataset) -> None:
    """Refuse data a stratified three-way split or a classifier cannot use (a regression: too
    few rows, or a constant target)."""
    if dataset_task(ds) == "regression":
        if len(ds.y) < MIN_REGRESSION_ROWS:
            raise DataError(f"{data_label(ds)}: {len(ds.y)} rows; a regression needs at least "
                            f"{MIN_REGRESSION_ROWS}")
        if float(np.ptp(ds.y)) == 0.0:
            raise DataError(f"{data_label(ds)}: the target is constant; nothing to regress")
        return
    counts = np.bincount(ds.y, minlength=len(ds.class_names))
    present = int((counts > 0).sum())
    if present < 2:
        raise DataError(f"{data_label(ds)}: the target has one class; need at least two")
    small = [ds.class_names[i] for i, n in enumerate(counts) if 0 < n < MIN_PER_CLASS]
    if small:
        raise DataError(
            f"{data_label(ds)}: class {small[0]!r} has {int(counts[ds.class_names.index(small[0])])}"
            f" sample(s); a stratified train/val/test split needs at least {MIN_PER_CLASS} per class"
        )
