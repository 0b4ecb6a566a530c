"""What kind each raw column of a table is, and which of its cells are missing.

A column's kind is inferred from its values; ``data.columns: {COL: KIND}`` overrides it and
``data.drop: [COL, ...]`` leaves columns out. What each kind becomes is
:mod:`paramaudit.data.features`; the report of it all is :mod:`paramaudit.data.columns_report`.

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
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from paramaudit.config import quote
from paramaudit.errors import DataError

NA_TOKENS = frozenset({"", "?", "-", "--", "NA", "N/A", "n/a", "na", "NaN", "nan", "-nan", "NULL",
                       "null", "None", "#N/A", "#NA", "<NA>"})
MISSING_CATEGORY = "(missing)"
ID_SHARE = 0.95  # distinct share of an identifier's values
ID_MIN_ROWS = 20  # fewer values than this are never an identifier (all distinct by chance)
DATE_SHARE = 0.95  # share of a text column's values that must parse as dates
TYPO_SHARE = 0.1  # at most this share of stray text in a column of numbers is a typo
TEXT_MIN_CHARS, TEXT_MIN_SPACES, TEXT_DISTINCT = 30, 3, 0.5  # free text: mean length, words
_ID_WORDS = {"id", "idx", "uuid", "guid", "key", "index"}


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
