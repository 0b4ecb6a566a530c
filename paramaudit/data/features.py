"""From a table's raw columns to the model's features, and the same conversions for new rows.

:func:`build_features` reads each feature column as its kind (:mod:`paramaudit.data.columns`)
says: numbers into one float32 matrix, dates into their numeric parts, categories into string
columns encoded after the split, and the rest dropped; it records one report row per column
(:mod:`paramaudit.data.columns_report`) and one :class:`InputColumn` per kept column, so
:mod:`paramaudit.serving.rows` reads new rows with the same :func:`as_float32`,
:func:`date_parts` and :func:`as_categories`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from paramaudit.config import DataConfig, quote
from paramaudit.data.columns import MISSING_CATEGORY, forced_kind, infer_kind, missing_to_na
from paramaudit.data.columns_report import column_row
from paramaudit.data.inputs import InputColumn, schema_type
from paramaudit.errors import DataError

DATE_PARTS = ("year", "month", "day", "dayofweek")
DROPPED_KINDS = ("identifier", "constant", "all missing", "free text", "drop")


@dataclass
class Features:
    """A table's feature columns, made usable: the numeric matrix, the categorical columns and
    one report row per raw column (see
    :func:`~paramaudit.data.columns_report.columns_report_markdown`)."""

    x: np.ndarray
    names: list[str]
    sources: list[str]
    categorical: pd.DataFrame | None
    report: list[dict[str, Any]] = field(default_factory=list)
    inputs: list[InputColumn] = field(default_factory=list)  # how to read new rows the same way


# --------------------------------------------------------------------------- one column, also a new row's


def as_float32(values: pd.Series | np.ndarray, name: str, shown: str) -> np.ndarray:
    """One feature as float32 (NaN where missing); infinities and float32 overflow refused.

    A float32 column (as :func:`~paramaudit.data.read.read_table` reads floats) is checked and
    returned as it is, without a float64 copy; anything else goes through float64.
    """
    if isinstance(values, pd.Series) and values.dtype == np.float32:
        v = values.to_numpy()
    elif isinstance(values, pd.Series):
        v = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        v = np.asarray(values)
        v = v if v.dtype == np.float32 else v.astype(np.float64, copy=False)
    name = name if len(name) <= 60 else f"{name[:60]}..."
    if np.isinf(v).any():
        raise DataError(f"data file {shown!r}: infinite values in feature columns {name}; leave "
                        "those cells empty (missing) or fix them")
    if v.dtype == np.float32:
        return v  # no float32 value overflows float32
    if (np.abs(v) > np.finfo(np.float32).max).any():
        raise DataError(f"data file {shown!r}: feature values overflow float32 in column {name}")
    return v.astype(np.float32)


def date_parts(dates: pd.Series, parts: tuple[str, ...] | None = None) -> dict[str, pd.Series]:
    """Year, month, day and day of the week (Monday 0), and the hour when times vary; or the
    ``parts`` named (new rows get the parts their training column got)."""
    dt = dates.dt
    if parts is None:
        parts = DATE_PARTS
        if bool(((dt.hour.fillna(0) != 0) | (dt.minute.fillna(0) != 0)).any()):
            parts = (*DATE_PARTS, "hour")
    return {p: getattr(dt, p) for p in parts}


def whole_numbers(col: pd.Series) -> bool:
    """Whether a column holds integers only (pandas reads integers with gaps as floats)."""
    if pd.api.types.is_integer_dtype(col):
        return True
    present = col.dropna()
    return pd.api.types.is_float_dtype(col) and bool((present == present.round()).all())


def as_categories(col: pd.Series, integral: bool | None = None) -> pd.Series:
    """A column's values as strings (categorical dtype), a missing value ``MISSING_CATEGORY``;
    integers as integers ("3", not "3.0"; ``integral`` None: when all of them are)."""
    present = col.notna()
    if integral is None:
        integral = whole_numbers(col)
    if integral and pd.api.types.is_float_dtype(col):
        # a fraction at prediction time stays itself rather than failing the cast
        whole = bool((col[present] == col[present].round()).all())
        col = col.astype("Int64") if whole else col.astype(object)
    return col.astype(str).where(present, MISSING_CATEGORY).astype("category")


# --------------------------------------------------------------------------- a table's features


def _unknown(names: list[str], known: list[str], field_name: str, shown: str) -> None:
    """Names in data.columns or data.drop that are not columns of the file: a DataError."""
    import difflib

    bad = [n for n in names if n not in known]
    if bad:
        hint = difflib.get_close_matches(bad[0], known, n=1) if len(bad[0]) <= 1_000 else []
        extra = f" (did you mean {quote(hint[0])}?)" if hint else ""
        raise DataError(f"config: data.{field_name}: no column {quote(bad[0])} in data file "
                        f"{shown!r}{extra}")


def check_column_names(frame: pd.DataFrame, cfg: DataConfig, shown: str) -> None:
    """data.columns and data.drop name columns of the file, and not the target."""
    known = [str(c) for c in frame.columns]
    _unknown(list(cfg.columns), known, "columns", shown)
    _unknown(list(cfg.drop), known, "drop", shown)
    for field_name, names in (("columns", cfg.columns), ("drop", cfg.drop)):
        if cfg.target in names:
            raise DataError(f"config: data.{field_name}: {quote(cfg.target)} is the target column "
                            f"of data file {shown!r}; name feature columns only")


def build_features(frame: pd.DataFrame, cfg: DataConfig, shown: str,
                   keep: np.ndarray | None = None) -> Features:
    """The feature columns (everything but the target) of ``keep``'s rows, kinds inferred or
    overridden, as a float32 matrix and categorical columns, with the report's rows."""
    numeric: list[tuple[str, str, Any]] = []  # (feature name, raw column, values)
    categorical: dict[str, pd.Series] = {}
    report: list[dict[str, Any]] = []
    inputs: list[InputColumn] = []
    for c in frame.columns:
        name = str(c)
        if name == cfg.target:
            continue
        raw = frame[c] if keep is None else frame[c][keep]
        col, tokens = missing_to_na(raw.reset_index(drop=True))
        if name in cfg.drop:
            report.append(column_row(name, "drop", col, "dropped", "data.drop"))
            continue
        found = (forced_kind(col, name, cfg.columns[name], shown) if name in cfg.columns
                 else infer_kind(col, name, shown))
        reason = found.reason + (f"; {', '.join(repr(t) for t in tokens[:3])} read as missing"
                                 if tokens else "")
        if found.kind in DROPPED_KINDS:
            report.append(column_row(name, found.kind, col, "dropped", reason))
        elif found.kind == "categorical":
            integral = whole_numbers(found.values)
            categorical[name] = as_categories(found.values, integral)
            report.append(column_row(name, "categorical", col, "encoded", reason))
            inputs.append(InputColumn(name, "categorical", schema_type(raw), integral=integral))
        elif found.kind == "datetime":
            parts = date_parts(found.values)
            numeric += [(f"{name} ({p})", name, v) for p, v in parts.items()]
            report.append(column_row(name, "datetime", col, f"expanded: {', '.join(parts)}", reason))
            inputs.append(InputColumn(name, "datetime", schema_type(raw),
                                      date_format=found.date_format, parts=tuple(parts)))
        else:
            # a column pandas read as numbers is converted when the matrix is filled, from the
            # frame itself: no second copy of it waits in this list
            values = None if found.values is col else found.values
            numeric.append((name, name, values))
            report.append(column_row(name, "numeric", col, "scaled", reason))
            kind = "duration" if pd.api.types.is_timedelta64_dtype(col) else "numeric"
            inputs.append(InputColumn(name, kind, schema_type(raw)))
    n = len(frame) if keep is None else int(np.count_nonzero(keep))
    x = np.empty((n, len(numeric)), dtype=np.float32)
    for j, (name, source, values) in enumerate(numeric):
        if values is None:
            values = frame[source] if keep is None else frame[source][keep]
        x[:, j] = as_float32(values, name, shown)
    cats = pd.DataFrame(categorical) if categorical else None
    return Features(x, [f for f, _, _ in numeric], [s for _, s, _ in numeric], cats, report,
                    inputs)


def no_usable_features(report: list[dict[str, Any]], shown: str) -> DataError:
    """The error for a table whose every feature column was dropped, naming them and why."""
    dropped = [r for r in report if r["action"] == "dropped"]
    named = ", ".join(f"{quote(r['column'], 30)} ({r['kind'] if r['kind'] != 'drop' else r['reason']})"
                      for r in dropped[:4])
    more = f" and {len(dropped) - 4} more" if len(dropped) > 4 else ""
    return DataError(f"data file {shown!r}: no usable feature column left: dropped {named}{more}; "
                     "see data.columns to keep one")
