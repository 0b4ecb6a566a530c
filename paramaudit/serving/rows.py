"""New rows' raw columns, read as the training table's were (:class:`InputColumn` by column)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from paramaudit.config import quote
from paramaudit.data.columns import missing_to_na
from paramaudit.data.features import as_categories, as_float32, date_parts
from paramaudit.data.inputs import InputColumn
from paramaudit.errors import DataError


def check_columns(frame: pd.DataFrame, inputs: list[InputColumn], shown: str) -> None:
    """Every input column is in ``frame`` (extra ones are ignored); else one line naming them."""
    have = {str(c) for c in frame.columns}
    missing = [c.name for c in inputs if c.name not in have]
    if missing:
        names = ", ".join(quote(n, 40) for n in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DataError(f"{shown}: missing column{'s' if len(missing) > 1 else ''} {names} "
                        f"(the model reads {len(inputs)} columns: "
                        f"{', '.join(quote(c.name, 40) for c in inputs[:5])}"
                        f"{' ...' if len(inputs) > 5 else ''})")


def _numbers(col: pd.Series, kind: str) -> pd.Series:
    if kind == "duration":
        return pd.to_timedelta(col, errors="coerce").dt.total_seconds()
    if pd.api.types.is_bool_dtype(col):
        return col.astype(np.float64)
    if pd.api.types.is_numeric_dtype(col):
        return col
    # text that is not a number is missing, as a typo was at training time
    return pd.to_numeric(col.astype(object), errors="coerce")


def _dates(col: pd.Series, fmt: str | None) -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if pd.api.types.is_datetime64_any_dtype(col):
            return col
        return pd.to_datetime(col, format=fmt, errors="coerce", utc=True)


def read_rows(frame: pd.DataFrame, inputs: list[InputColumn], shown: str
              ) -> tuple[np.ndarray, pd.DataFrame | None]:
    """The numeric feature matrix (float32, NaN where missing) and the categorical columns of
    new rows, in training's column order; a missing value or an unseen category is left for the
    imputer and the encoder, as at training time."""
    check_columns(frame, inputs, shown)
    frame = frame.rename(columns=str).reset_index(drop=True)
    numeric: list[tuple[str, pd.Series]] = []
    categorical: dict[str, pd.Series] = {}
    for c in inputs:
        col, _ = missing_to_na(frame[c.name])
        if c.kind == "categorical":
            categorical[c.name] = as_categories(col, c.integral)
        elif c.kind == "datetime":
            parts = date_parts(_dates(col, c.date_format), c.parts)
            numeric += [(f"{c.name} ({p})", v) for p, v in parts.items()]
        else:
            numeric.append((c.name, _numbers(col, c.kind)))
    x = np.empty((len(frame), len(numeric)), dtype=np.float32)
    for j, (name, values) in enumerate(numeric):
        x[:, j] = as_float32(values, name, shown)
    return x, (pd.DataFrame(categorical) if categorical else None)
