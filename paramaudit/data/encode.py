"""Encoding categorical columns as numbers, fitted on the train split only.

``data.categorical`` picks the encoding:

- ``auto`` (the default): one-hot up to ``MAX_ONEHOT`` categories (after pooling the rare
  ones), frequency encoding above it;
- ``onehot``: one-hot whatever the number of categories;
- ``frequency``: every column frequency-encoded;
- ``error``: categorical columns are refused when the data loads, so none reaches here.

One-hot is scikit-learn's ``OneHotEncoder``: each column's categories seen in the train split,
sorted, named ``column=value``; a category with fewer than ``data.min_category_count`` train
rows is pooled with the other rare ones into ``column=(other)``, and a category first seen in
val, test or at prediction time goes there too (all zeros when no category was rare): never an
error. A missing value is a category of its own, ``(missing)``.

Frequency encoding: one column ``column (frequency)``, the share of train rows with that
category; a category not seen in train is 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from sklearn.preprocessing import OneHotEncoder

MAX_ONEHOT = 30  # auto: more categories than this (after pooling) are frequency-encoded
OTHER_CATEGORY = "(other)"


@dataclass
class OneHot:
    """One-hot encoding of categorical columns with the categories seen in the train split."""

    columns: list[str]
    encoder: OneHotEncoder

    def _rare(self, i: int) -> list[Any]:
        rare = getattr(self.encoder, "infrequent_categories_", None)
        return [] if rare is None or rare[i] is None else list(rare[i])

    @property
    def categories(self) -> list[list[str]]:
        """Each column's categories, in the order of the encoded columns (pooled: ``(other)``)."""
        out = []
        for i, cats in enumerate(self.encoder.categories_):
            rare = set(self._rare(i))
            out.append([str(c) for c in cats if c not in rare] + ([OTHER_CATEGORY] if rare else []))
        return out

    def pooled(self, i: int) -> int:
        """How many rare categories of column ``i`` were pooled into ``(other)``."""
        return len(self._rare(i))

    @property
    def n_out(self) -> int:
        """Number of encoded columns."""
        return sum(len(c) for c in self.categories)

    def names(self) -> list[str]:
        """``column=value`` for every encoded column."""
        pairs = zip(self.columns, self.categories, strict=True)
        return [f"{col}={cat}" for col, cats in pairs for cat in cats]

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode rows (float32); an unseen category goes to ``(other)``, or all zeros."""
        return self.encoder.transform(frame[self.columns])


def fit_onehot(frame: pd.DataFrame, min_count: int | None = None) -> OneHot:
    """The categories of each column, as seen in these (train) rows; with ``min_count``, those
    seen in fewer rows pooled into one ``(other)`` column."""
    from sklearn.preprocessing import OneHotEncoder  # imported late: slow

    columns = [str(c) for c in frame.columns]
    pool = min_count if min_count is not None and min_count > 1 else None
    encoder = OneHotEncoder(handle_unknown="infrequent_if_exist" if pool else "ignore",
                            min_frequency=pool, sparse_output=False, dtype=np.float32)
    return OneHot(columns, encoder.fit(frame[columns]))


@dataclass
class FrequencyEncoding:
    """Each category as the share of train rows that have it (0 for one not seen in train)."""

    columns: list[str]
    shares: list[dict[str, float]]

    @property
    def n_out(self) -> int:
        """Number of encoded columns: one per column."""
        return len(self.columns)

    def names(self) -> list[str]:
        """``column (frequency)`` for every column."""
        return [f"{c} (frequency)" for c in self.columns]

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode rows (float32)."""
        out = np.zeros((len(frame), len(self.columns)), dtype=np.float32)
        for j, (c, shares) in enumerate(zip(self.columns, self.shares, strict=True)):
            mapped = frame[c].astype(object).map(shares)
            out[:, j] = mapped.to_numpy(dtype=np.float64, na_value=0.0)
        return out


def fit_frequency(frame: pd.DataFrame) -> FrequencyEncoding:
    """The share of these (train) rows with each category, by column."""
    shares = []
    for c in frame.columns:
        counts = frame[c].value_counts(sort=False)
        counts = counts[counts > 0]
        shares.append({str(k): float(v) / len(frame) for k, v in counts.items()})
    return FrequencyEncoding([str(c) for c in frame.columns], shares)


@dataclass
class Encoding:
    """The categorical columns' encoding: a one-hot block, then a frequency block."""

    mode: str
    onehot: OneHot | None = None
    frequency: FrequencyEncoding | None = None
    actions: dict[str, str] = field(default_factory=dict)  # column -> what became of it

    @property
    def n_out(self) -> int:
        """Number of encoded columns."""
        return sum(e.n_out for e in (self.onehot, self.frequency) if e is not None)

    def names(self) -> list[str]:
        """The encoded columns' names."""
        return [n for e in (self.onehot, self.frequency) if e is not None for n in e.names()]

    def sources(self) -> list[str]:
        """The categorical column each encoded column comes from."""
        out = []
        if self.onehot is not None:
            for col, cats in zip(self.onehot.columns, self.onehot.categories, strict=True):
                out += [col] * len(cats)
        return out + (list(self.frequency.columns) if self.frequency is not None else [])

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode rows (float32)."""
        blocks = [e.transform(frame) for e in (self.onehot, self.frequency) if e is not None]
        return np.hstack(blocks).astype(np.float32, copy=False)

    def describe(self, columns: list[str]) -> dict[str, Any]:
        """For the splits and the report: the columns, by encoding, and the encoded width."""
        return {"categorical_columns": columns, "encoded_columns": self.n_out, "mode": self.mode,
                "onehot_columns": self.onehot.columns if self.onehot else [],
                "frequency_columns": self.frequency.columns if self.frequency else []}


def _pooled_size(col: pd.Series, min_count: int) -> tuple[int, int]:
    """Categories kept and categories pooled, as one-hot with ``min_count`` would make them."""
    counts = col.value_counts(sort=False)
    counts = counts[counts > 0]
    kept = int((counts >= min_count).sum())
    return kept, len(counts) - kept


def fit_categorical(frame: pd.DataFrame, mode: str, min_count: int) -> Encoding:
    """The encoding of these (train) rows' categorical columns under ``data.categorical``."""
    onehot_cols, frequency_cols, actions = [], [], {}
    for c in frame.columns:
        kept, pooled = _pooled_size(frame[c], min_count)
        width = kept + (1 if pooled else 0)
        if mode == "frequency" or (mode == "auto" and (width > MAX_ONEHOT or kept == 0)):
            frequency_cols.append(c)
            actions[str(c)] = "frequency-encoded"
        else:
            onehot_cols.append(c)
            actions[str(c)] = f"one-hot ({width}" + (f", {pooled} rare pooled)" if pooled else ")")
    return Encoding(
        mode,
        fit_onehot(frame[onehot_cols], min_count) if onehot_cols else None,
        fit_frequency(frame[frequency_cols]) if frequency_cols else None,
        actions,
    )
