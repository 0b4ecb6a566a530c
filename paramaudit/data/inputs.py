"""What a model's input columns were at training time, so new rows are read the same way.

One :class:`InputColumn` per raw column the features came from (dropped columns have none),
recorded by :func:`~paramaudit.data.features.build_features` and applied to new rows by
:mod:`paramaudit.serving.rows`. No pandas import: the config checks import this module too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

INPUT_KINDS = ("numeric", "duration", "categorical", "datetime")


@dataclass(frozen=True)
class InputColumn:
    """A raw column as the features read it: its kind, its type in the model's signature
    (MLflow's names: double, boolean, datetime, string), and how dates and integers parsed."""

    name: str
    kind: str
    dtype: str = "double"
    date_format: str | None = None  # dates from text: the strptime format ("mixed": any)
    parts: tuple[str, ...] = ()  # a date: the parts it expanded into
    integral: bool = False  # categorical numbers: whole floats read as integers ("3", not "3.0")


def schema_type(col: Any) -> str:
    """A raw pandas column's type in the model signature. Every number is a double: a missing
    value makes an integer column float, and the signature must take it."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(col):
        return "boolean"
    if pd.api.types.is_numeric_dtype(col):
        return "double"
    if pd.api.types.is_datetime64_any_dtype(col):
        return "datetime"
    return "string"


def numeric_inputs(names: list[str]) -> list[InputColumn]:
    """A built-in data set's inputs: every feature a number under its own name."""
    return [InputColumn(n, "numeric") for n in names]
