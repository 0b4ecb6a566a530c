"""The preprocess step's cache key: the data's content and the settings, never loading it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sklearn.datasets
from support.tables import csv_cfg, labelled_frame

from paramaudit.config import DataConfig, PreprocessConfig
from paramaudit.data.cache import preprocess_cache_key
from paramaudit.errors import DataError

# --------------------------------------------------------------------------- the cache key


def test_cache_key_is_stable_and_follows_the_file(tmp_path: Path) -> None:
    p = tmp_path / "animals.csv"
    labelled_frame().to_csv(p, index=False)
    pre = PreprocessConfig()
    key = preprocess_cache_key(csv_cfg(p), pre, 0)
    assert len(key) == 64 and key == preprocess_cache_key(csv_cfg(p), PreprocessConfig(), 0)
    frame = labelled_frame()
    frame.loc[0, "f1"] += 1.0
    frame.to_csv(p, index=False)
    assert preprocess_cache_key(csv_cfg(p), pre, 0) != key


def test_cache_key_follows_the_config(tmp_path: Path) -> None:
    p = tmp_path / "animals.csv"
    labelled_frame().to_csv(p, index=False)
    base = preprocess_cache_key(csv_cfg(p), PreprocessConfig(), 0)
    others = {
        preprocess_cache_key(csv_cfg(p), PreprocessConfig(scaler="minmax"), 0),
        preprocess_cache_key(csv_cfg(p), PreprocessConfig(pca_components=2), 0),
        preprocess_cache_key(csv_cfg(p), PreprocessConfig(scaler={"choice": ["standard", "robust"]}), 0),
        preprocess_cache_key(csv_cfg(p), PreprocessConfig(), 1),
        preprocess_cache_key(csv_cfg(p, val_size=0.25), PreprocessConfig(), 0),
        preprocess_cache_key(csv_cfg(p, categorical="onehot"), PreprocessConfig(), 0),
    }
    assert base not in others and len(others) == 6


def test_cache_key_hashes_without_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("the cache key must not load the data")

    p = tmp_path / "animals.csv"
    labelled_frame().to_csv(p, index=False)
    monkeypatch.setattr(pd, "read_csv", refuse)
    for loader in ("load_digits", "load_iris"):  # what a built-in set would be loaded with
        monkeypatch.setattr(sklearn.datasets, loader, refuse)
    assert preprocess_cache_key(csv_cfg(p), PreprocessConfig(), 0)
    digits = preprocess_cache_key(DataConfig(dataset="digits"), PreprocessConfig(), 0)
    assert digits == preprocess_cache_key(DataConfig(dataset="digits"), PreprocessConfig(), 0)
    assert digits != preprocess_cache_key(DataConfig(dataset="iris"), PreprocessConfig(), 0)


def test_cache_key_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        preprocess_cache_key(csv_cfg(tmp_path / "gone.csv"), PreprocessConfig(), 0)
