"""What each raw column of a table is, what becomes of it, and the columns report.

A column's kind is inferred from its values; ``data.columns: {COL: KIND}`` overrides it and
``data.drop: [COL, ...]`` leaves columns out.

- numeric: numbers (a missing value stays NaN here and is imputed after the split);
- categorical: text, booleans, pandas categories (encoded after the split, on the train rows);
- datetime: a datetime column, or text nearly all of whose values (``DATE_SHARE``) parse as
  dates with a four-digit year; expanded into the numeric parts year, month, day, dayofweek,
  and hour when the times of day vary;
- identifier: integers or text nearly all distinct (``ID_SHARE`` of more than ``ID_MIN_ROWS``
  values); integers only when they run nearly consecutively or the name says so (``id``,
  ``CustomerId``, ``Unnamed: 0``): a nearly-unique measurement is a feature, not an id. Dropped;
- constant (one value and no gaps), all missing, and free text (long, mostly distinct text;
  not supported yet): dropped.

Small integer columns stay numeric (an ordinal such as a rating keeps its order); a numeric
column becomes categorical only through ``data.columns``.

Missing values: an empty cell, pandas' NA tokens and the placeholders ``NA_TOKENS`` (``?``,
``-``, ``n/a``, ...; spaces trimmed) are missing in every column, so a numeric column written
with ``?`` for gaps is numeric with gaps. Any other stray text in a column of numbers
(``12a``, ``unknown``; at most ``TYPO_SHARE`` of its values) is a one-line DataError naming it:
more likely a typo than a category (``data.columns: {COL: numeric}`` reads them as missing).
"""

from __future__ import annotations

import collections
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from paramaudit.config import DataConfig, quote
from paramaudit.data.inputs import InputColumn, schema_type
from paramaudit.errors import DataError

NA_TOKENS = frozenset({"", "?", "-", "--", "NA", "N/A", "n/a", "na", "NaN", "nan", "-nan", "NULL",
                       "null", "None", "#N/A", "#NA", "<NA>"})
MISSING_CATEGORY = "(missing)"
ID_SHARE = 0.95  # distinct share of an identifier's values
ID_MIN_ROWS = 20  # fewer values than this are never an identifier (all distinct by chance)
DATE_SHARE = 0.95  # share of a text column's values that must parse as dates
TYPO_SHARE = 0.1  # at most this share of stray text in a column of numbers is a typo
TEXT_MIN_CHARS, TEXT_MIN_SPACES, TEXT_DISTINCT = 30, 3, 0.5  # free text: mean length, words
DATE_PARTS = ("year", "month", "day", "dayofweek")
DROPPED_KINDS = ("identifier", "constant", "all missing", "free text", "drop")
_ID_WORDS = {"id", "idx", "uuid", "guid", "key", "index"}


@dataclass
class Features:
    """A table's feature columns, made usable: the numeric matrix, the categorical columns and
    one report row per raw column (see :func:`columns_report_markdown`)."""

    x: np.ndarray
    names: list[str]
    sources: list[str]
    categorical: pd.DataFrame | None
    report: list[dict[str, Any]] = field(default_factory=list)
    inputs: list[InputColumn] = field(default_factory=list)  # how to read new rows the same way


# --------------------------------------------------------------------------- cells and kinds


def missing_to_na(col: pd.Series) -> tuple[pd.Series, list[str]]:
    """A text column with its placeholder cells (``NA_TOKENS``) as NaN and its values trimmed,
    and the placeholders seen; other columns unchanged."""
    if isinstance(col.dtype, pd.StringDtype):
        text = col.str.strip()
    elif col.dtype == object:
        text = pd.Series([v.strip() if isinstance(v, str) else v for v in col], index=col.index,
                         dtype=object)
    else:
        return col, []
    na = text.isin(NA_TOKENS)
    if not na.any():
        return text, []
    seen = sorted({str(v) for v in text[na].unique().tolist()})
    return text.mask(na), seen


def _mostly_numbers(present: pd.Series) -> bool:
    """Whether a spread sample of the values is mostly numbers (spares parsing a text column)."""
    sample = present.iloc[:: max(1, len(present) // 1000)]
    return bool(pd.to_numeric(sample.astype(object), errors="coerce").notna().mean() >= 0.5)


def as_numbers(col: pd.Series) -> tuple[pd.Series | None, list[str]]:
    """A text column read as numbers, or its stray values when it is numbers apart from a few
    (at most ``TYPO_SHARE``: a typo, not a category); (None, []) when it is text."""
    present = col.dropna()
    if present.empty or not _mostly_numbers(present):
        return None, []
    numbers = pd.to_numeric(col.astype(object), errors="coerce")
    bad = col[numbers.isna() & col.notna()]
    if len(bad) == 0:
        return numbers, []
    if len(bad) > TYPO_SHARE * len(present):
        return None, []
    return None, sorted({str(v) for v in bad.unique().tolist()})


def distinct_count(col: pd.Series) -> int:
    """``col.nunique()``, by numpy's sort for plain numbers: a tenth of the time on a million
    floats, and a big table counts every column's."""
    if isinstance(col.dtype, np.dtype) and col.dtype.kind in "fiu":
        values = col.to_numpy()
        if values.dtype.kind == "f":
            values = values[~np.isnan(values)]
        return int(len(np.unique(values)))
    return int(col.nunique())


def _id_like_name(name: str) -> bool:
    if name.startswith("Unnamed:"):  # the index column a DataFrame.to_csv wrote
        return True
    words = re.split(r"[^a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", name).lower())
    return bool(_ID_WORDS & set(words))


def _integer_identifier(numbers: pd.Series, name: str) -> bool:
    """Nearly-unique integers that run nearly consecutively, or under an id-like name."""
    present = numbers.dropna()
    if len(present) <= ID_MIN_ROWS or not pd.api.types.is_numeric_dtype(present):
        return False
    values = present.to_numpy()
    if values.dtype != np.float32:  # float32 stays float32: no float64 copy of a big column
        values = present.to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
        return False
    distinct = len(np.unique(values))
    if distinct < ID_SHARE * len(values):
        return False
    span = float(values.max()) - float(values.min()) + 1  # a run with a few numbers left out
    return span <= 1.25 * len(values) or _id_like_name(name)


def _as_dates(text: pd.Series) -> tuple[pd.Series, str] | None:
    """The column parsed as dates, and the format, when nearly all its values are dates with a
    four-digit year (month first when both orders fit, as pandas guesses; day first when only
    that does)."""
    from pandas.tseries.api import guess_datetime_format

    present = text.dropna()
    sample = [str(v) for v in present.drop_duplicates().iloc[:50].tolist()]
    if not sample or not all(any(ch.isdigit() for ch in v) for v in sample):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for dayfirst in (False, True):
            guesses = collections.Counter(guess_datetime_format(v, dayfirst=dayfirst) for v in sample)
            fmt, hits = guesses.most_common(1)[0]
            if fmt is None or "%Y" not in fmt or hits < DATE_SHARE * len(sample):
                continue
            parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=True)
            if parsed.notna().sum() >= DATE_SHARE * len(present):
                return parsed, fmt
    return None


def _free_text(strings: pd.Series) -> bool:
    """Long, mostly distinct text: sentences, not categories."""
    return bool(strings.str.len().mean() >= TEXT_MIN_CHARS
                and strings.str.count(" ").mean() >= TEXT_MIN_SPACES
                and strings.nunique() >= TEXT_DISTINCT * len(strings))


@dataclass
class _Kind:
    kind: str
    reason: str
    values: Any = None  # what the features are made of: a Series of numbers, dates or text
    date_format: str | None = None  # dates from text: the format they parsed with


def _text_kind(col: pd.Series, name: str, shown: str) -> _Kind:
    """The kind of a column pandas did not read as numbers (text, booleans, mixed objects)."""
    present = col.dropna()
    inferred = pd.api.types.infer_dtype(present, skipna=True)
    if inferred == "boolean":
        return _Kind("categorical", "booleans", col)
    if inferred in ("datetime", "datetime64", "date"):
        return _Kind("datetime", "dates", pd.to_datetime(col, errors="coerce", utc=True))
    numbers, stray = as_numbers(col)
    if numbers is not None:
        return _Kind("numeric", "numbers (as text)", numbers)
    if stray:
        raise DataError(
            f"data file {shown!r}: feature column {quote(name)} is numeric except for "
            f"{', '.join(quote(s, 20) for s in stray[:3])}{' ...' if len(stray) > 3 else ''}; fix "
            f"those values, or set data.columns: {{{quote(name, 40)}: numeric}} to read them as missing"
        )
    if inferred == "categorical":
        return _Kind("categorical", "categories", col)
    dates = _as_dates(col) if inferred == "string" else None
    if dates is not None:
        return _Kind("datetime", "dates (as text)", *dates)
    strings = present.astype(str)
    if _free_text(strings):
        return _Kind("free text", "free text (not supported yet)")
    if len(present) > ID_MIN_ROWS and strings.nunique() >= ID_SHARE * len(present):
        return _Kind("identifier", f"{strings.nunique():,} distinct of {len(present):,} values")
    return _Kind("categorical", "text", col)


def infer_kind(col: pd.Series, name: str, shown: str) -> _Kind:
    """A cleaned column's kind (see the module docstring), with the values its features need."""
    present = int(col.notna().sum())
    if present == 0:
        return _Kind("all missing", "no values")
    if present == len(col) and distinct_count(col) == 1:
        return _Kind("constant", f"one value, {quote(str(col.iloc[0]), 30)}")
    if pd.api.types.is_bool_dtype(col):
        return _Kind("categorical", "booleans", col)
    if pd.api.types.is_datetime64_any_dtype(col):
        return _Kind("datetime", "dates", col)
    if pd.api.types.is_timedelta64_dtype(col):
        return _Kind("numeric", "durations (seconds)", col.dt.total_seconds())
    if pd.api.types.is_numeric_dtype(col):
        if _integer_identifier(col, name):
            return _Kind("identifier",
                         f"{distinct_count(col):,} distinct integers of {present:,} values")
        return _Kind("numeric", "numbers", col)
    return _text_kind(col, name, shown)


def forced_kind(col: pd.Series, name: str, kind: str, shown: str) -> _Kind:
    """The kind ``data.columns`` gives a column, with the values converted to suit it."""
    where = f"config: data.columns: {quote(name)} of data file {shown!r}"
    if kind in ("identifier", "drop"):
        return _Kind(kind, "data.columns")
    if kind == "categorical":
        return _Kind("categorical", "data.columns", col)
    present = int(col.notna().sum())
    if kind == "numeric":
        if pd.api.types.is_bool_dtype(col):
            numbers = col.astype(np.float64)
        elif pd.api.types.is_numeric_dtype(col):
            numbers = col
        else:
            numbers = pd.to_numeric(col.astype(object), errors="coerce")
        if present and numbers.notna().sum() == 0:
            raise DataError(f"{where} is numeric, but none of its values is a number")
        return _Kind("numeric", "data.columns", numbers)
    if pd.api.types.is_datetime64_any_dtype(col):
        return _Kind("datetime", "data.columns", col)
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        raise DataError(f"{where} is datetime, but it holds numbers, not dates")
    found = _as_dates(col)
    if found is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = pd.to_datetime(col, errors="coerce", utc=True, format="mixed"), "mixed"
    if present and found[0].notna().sum() == 0:
        raise DataError(f"{where} is datetime, but none of its values parses as a date")
    return _Kind("datetime", "data.columns", *found)


# --------------------------------------------------------------------------- features


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


def _row(name: str, kind: str, col: pd.Series, action: str, reason: str) -> dict[str, Any]:
    n = len(col)
    missing = int(col.isna().sum())
    return {"column": name, "kind": kind, "missing_share": round(missing / n, 4) if n else 0.0,
            "distinct": distinct_count(col), "action": action, "reason": reason}


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
            report.append(_row(name, "drop", col, "dropped", "data.drop"))
            continue
        found = (forced_kind(col, name, cfg.columns[name], shown) if name in cfg.columns
                 else infer_kind(col, name, shown))
        reason = found.reason + (f"; {', '.join(repr(t) for t in tokens[:3])} read as missing"
                                 if tokens else "")
        if found.kind in DROPPED_KINDS:
            report.append(_row(name, found.kind, col, "dropped", reason))
        elif found.kind == "categorical":
            integral = whole_numbers(found.values)
            categorical[name] = as_categories(found.values, integral)
            report.append(_row(name, "categorical", col, "encoded", reason))
            inputs.append(InputColumn(name, "categorical", schema_type(raw), integral=integral))
        elif found.kind == "datetime":
            parts = date_parts(found.values)
            numeric += [(f"{name} ({p})", name, v) for p, v in parts.items()]
            report.append(_row(name, "datetime", col, f"expanded: {', '.join(parts)}", reason))
            inputs.append(InputColumn(name, "datetime", schema_type(raw),
                                      date_format=found.date_format, parts=tuple(parts)))
        else:
            # a column pandas read as numbers is converted when the matrix is filled, from the
            # frame itself: no second copy of it waits in this list
            values = None if found.values is col else found.values
            numeric.append((name, name, values))
            report.append(_row(name, "numeric", col, "scaled", reason))
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


# --------------------------------------------------------------------------- the report


def numeric_report(x: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    """The report's rows of an all-numeric matrix without gaps (a built-in data set)."""
    return [{"column": n, "kind": "numeric", "missing_share": 0.0,
             "distinct": int(len(np.unique(x[:, j]))), "action": "scaled", "reason": "numbers"}
            for j, n in enumerate(names)]


def target_row(name: str, labels: pd.Series, n_read: int, n_classes: int) -> dict[str, Any]:
    """The target's row of the report (missing share over the rows read)."""
    missing = n_read - len(labels)
    return {"column": name, "kind": "target", "missing_share": round(missing / n_read, 4),
            "distinct": n_classes, "action": f"target ({n_classes} classes)"
            + (f"; {missing:,} rows without one dropped" if missing else ""), "reason": "data.target"}


def finish_report(rows: list[dict[str, Any]], impute: str | None, imputed: set[str],
                  indicated: set[str], encoded: dict[str, str]) -> list[dict[str, Any]]:
    """The report once preprocessing is fitted: imputation and encoding by raw column."""
    out = []
    for row in rows:
        row = dict(row)
        col = row["column"]
        gaps = ""
        if col in imputed and impute:
            gaps = f"imputed ({impute})" + (" + indicator" if col in indicated else "")
        if row["kind"] == "numeric":
            row["action"] = gaps or "scaled"
        elif row["kind"] == "datetime":  # idempotent: a refit reports its own imputation
            expanded = row["action"].split("; imputed")[0]
            row["action"] = f"{expanded}; {gaps}" if gaps else expanded
        elif row["kind"] == "categorical" and col in encoded:
            row["action"] = encoded[col]
        out.append(row)
    return out


def _cell(value: Any) -> str:
    text = f"{value:.1%}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def columns_report_markdown(rows: list[dict[str, Any]]) -> str:
    """The columns report as a markdown table: column, kind, missing, distinct, action, reason."""
    keys = ("column", "kind", "missing_share", "distinct", "action", "reason")
    lines = ["| column | kind | missing | distinct | action | reason |",
             "|---|---|---:|---:|---|---|"]
    lines += ["| " + " | ".join(_cell(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"
