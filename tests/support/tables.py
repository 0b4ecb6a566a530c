"""Small tables and configs for the data tests (tests/unit/test_data_*.py), made in the test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from paramaudit.config import DataConfig
from paramaudit.data import Dataset, load_dataset
from paramaudit.errors import DataError


def data_error(cfg: DataConfig) -> str:
    """Load data that must fail; return the message after checking it is one line."""
    with pytest.raises(DataError) as info:
        load_dataset(cfg)
    msg = str(info.value)
    assert "\n" not in msg, f"DataError spans lines: {msg!r}"
    return msg


def csv_cfg(path: Path, target: str = "label", **kw: object) -> DataConfig:
    """The data config of a file with a label column."""
    return DataConfig(path=path, target=target, **kw)


def labelled_frame(n: int = 90, seed: int = 0) -> pd.DataFrame:
    """Three string classes, two informative numeric features, one integer feature."""
    rng = np.random.default_rng(seed)
    labels = np.array(["cat", "dog", "emu"])[np.arange(n) % 3]
    shift = (np.arange(n) % 3).astype(float)
    return pd.DataFrame({
        "f1": rng.normal(size=n) + 3 * shift,
        "f2": rng.normal(size=n) - shift,
        "count": rng.integers(0, 10, n),
        "label": labels,
    })


def indexed_dataset(n: int = 300, classes: tuple[int, ...] = (150, 100, 50), seed: int = 0) -> Dataset:
    """A dataset whose first feature is the row id, so splits can be traced back to rows."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.full(k, c) for c, k in enumerate(classes)]).astype(np.int64)
    rng.shuffle(y)
    x = np.column_stack([np.arange(len(y)), rng.normal(5.0, 3.0, (len(y), 3))]).astype(np.float32)
    return Dataset(x, y, ["row", "a", "b", "c"], [f"c{i}" for i in range(len(classes))],
                   "indexed", "hash")


def colour_frame(n: int = 90) -> pd.DataFrame:
    """labelled_frame plus two categorical columns: a colour (text) and a flag (booleans)."""
    frame = labelled_frame(n)
    frame.insert(1, "colour", np.array(["red", "green", "blue"])[(np.arange(n) // 3) % 3])
    frame["flag"] = np.arange(n) % 2 == 0
    return frame


def messy_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """A table as users have them: a row id, gaps in numbers and text, a constant, dates, free
    text, a yes/no target with a signal in ``age`` and ``plan``."""
    rng = np.random.default_rng(seed)
    target = np.where(np.arange(n) % 3 == 0, "yes", "no")
    age = rng.normal(40, 10, n) + 8 * (target == "yes")
    income = rng.lognormal(10, 0.5, n)
    plan = np.where(target == "yes", rng.choice(["gold", "silver"], n), rng.choice(["basic", "silver"], n))
    frame = pd.DataFrame({
        "customer_id": np.arange(1000, 1000 + n),
        "age": age.round(1),
        "income": income.round(2),
        "plan": plan,
        "region": rng.choice(["north", "south", "east", "west"], n),
        "country": "NZ",
        "signup": pd.date_range("2020-01-01", periods=n, freq="3D").strftime("%Y-%m-%d"),
        "notes": [f"customer {i} called about the {p} plan and asked for a refund" for i, p in
                  enumerate(plan)],
        "children": rng.integers(0, 4, n),
        "churn": target,
    })
    frame = frame.astype({"age": object, "region": object, "signup": object})
    frame.loc[rng.choice(n, n // 10, replace=False), "age"] = "?"
    frame.loc[rng.choice(n, n // 20, replace=False), "region"] = None
    frame.loc[rng.choice(n, 5, replace=False), "signup"] = ""
    return frame
