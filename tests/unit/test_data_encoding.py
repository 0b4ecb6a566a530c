"""Categorical columns: auto, one-hot and frequency encoding, rare and unseen categories, and
targets as they come (paramaudit.data.encode, paramaudit.data.checks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.tables import csv_cfg, data_error, indexed_dataset, labelled_frame

from paramaudit.config import DataConfig, PipelineConfig, PreprocessConfig
from paramaudit.data import MAX_ONEHOT, load_and_split, load_dataset, split_and_scale
from paramaudit.data.encode import fit_categorical, fit_onehot
from paramaudit.data.read import Dataset

# --------------------------------------------------------------------------- unseen and rare


def with_colour(colour: list[str]) -> Dataset:
    base = indexed_dataset(300)
    return Dataset(base.x, base.y, base.feature_names, base.class_names, "cats", "h",
                   categorical=pd.DataFrame({"colour": colour}).astype("category"))


def test_unseen_categories_in_the_test_split_go_to_the_other_slot() -> None:
    s0 = split_and_scale(indexed_dataset(300), DataConfig(), PreprocessConfig(scaler="none"), 0)
    test_rows = set(s0.x_test[:, 0].astype(int).tolist())
    train_rows = sorted(s0.x_train[:, 0].astype(int).tolist())
    colour = ["red" if i % 2 else "blue" for i in range(300)]
    for i in test_rows:
        colour[i] = f"new-{i}"  # never seen in train
    for i in train_rows[:3]:
        colour[i] = "teal"  # seen, but rarer than data.min_category_count (5)
    s = split_and_scale(with_colour(colour), DataConfig(), PreprocessConfig(scaler="none"), 0)
    assert s.feature_names[4:] == ["colour=blue", "colour=red", "colour=(other)"]
    assert s.encoding["actions"] == {"colour": "one-hot (3, 1 rare pooled)"}
    np.testing.assert_array_equal(s.raw_test[:, 4:], [[0, 0, 1]] * len(s.y_test))
    teal = np.isin(s.raw_train[:, 0].astype(int), train_rows[:3])
    np.testing.assert_array_equal(s.raw_train[teal, 4:], [[0, 0, 1]] * 3)


def test_without_rare_categories_an_unseen_one_is_all_zeros() -> None:
    enc = fit_onehot(pd.DataFrame({"c": ["a", "b"] * 5}), min_count=5)
    np.testing.assert_array_equal(enc.transform(pd.DataFrame({"c": ["b", "zzz"]})), [[0, 1], [0, 0]])
    assert enc.names() == ["c=a", "c=b"]


def test_min_category_count_sets_the_pooling(tmp_path: Path) -> None:
    p = tmp_path / "c.csv"
    frame = labelled_frame(300)
    frame["shop"] = np.array(["a", "b", "c", "d"])[np.minimum(np.arange(300) // 50, 3)]
    frame.loc[:4, "shop"] = "tiny"  # 5 rows in all, fewer in train
    frame.to_csv(p, index=False)
    pooled = load_and_split(PipelineConfig(data=csv_cfg(p)))
    assert "shop=(other)" in pooled.feature_names and "shop=tiny" not in pooled.feature_names
    kept = load_and_split(PipelineConfig(data=csv_cfg(p, min_category_count=1)))
    assert "shop=tiny" in kept.feature_names and "shop=(other)" not in kept.feature_names


# --------------------------------------------------------------------------- auto, onehot, frequency


def many_categories(n: int = 600, k: int = MAX_ONEHOT + 10) -> pd.DataFrame:
    return pd.DataFrame({"city": [f"city{i % k}" for i in range(n)]}).astype("category")


def test_auto_frequency_encodes_above_the_one_hot_limit() -> None:
    train = pd.concat([many_categories(), pd.DataFrame({"size": ["s", "m", "l"] * 200})], axis=1)
    enc = fit_categorical(train, "auto", 5)
    assert enc.actions == {"city": "frequency-encoded", "size": "one-hot (3)"}
    assert enc.names() == ["size=l", "size=m", "size=s", "city (frequency)"]
    out = enc.transform(pd.DataFrame({"city": ["city0", "nowhere"], "size": ["m", "xl"]}))
    share = (train["city"] == "city0").mean()
    np.testing.assert_allclose(out, [[0, 1, 0, share], [0, 0, 0, 0]], rtol=1e-6)
    assert out.dtype == np.float32


@pytest.mark.parametrize(("mode", "width"), [("onehot", MAX_ONEHOT + 10), ("frequency", 1)])
def test_onehot_and_frequency_modes(mode: str, width: int) -> None:
    enc = fit_categorical(many_categories(), mode, 5)
    assert enc.n_out == width and enc.mode == mode


def test_frequency_shares_come_from_the_train_rows_only() -> None:
    colour = ["red"] * 200 + ["blue"] * 100
    s = split_and_scale(with_colour(colour), DataConfig(categorical="frequency"),
                        PreprocessConfig(scaler="none"), 0)
    assert s.feature_names[-1] == "colour (frequency)"
    red_share = float((s.raw_train[:, -1] == s.raw_train[:, -1].max()).mean())
    expected = {round(red_share, 5), round(1 - red_share, 5)}
    assert {round(float(v), 5) for v in np.unique(s.raw_train[:, -1])} == expected
    assert {round(float(v), 5) for v in np.unique(s.raw_test[:, -1])} <= expected


def test_a_categorical_column_of_many_values_loads_in_auto_mode(tmp_path: Path) -> None:
    p = tmp_path / "shops.csv"
    n = 900
    frame = labelled_frame(n)
    frame["shop"] = [f"S{i % 300}" for i in range(n)]  # 300 values, 3 rows each
    frame.to_csv(p, index=False)
    s = load_and_split(PipelineConfig(data=csv_cfg(p)))
    assert s.feature_names[-1] == "shop (frequency)" and s.n_features == 4
    assert {r["column"]: r["action"] for r in s.columns_report}["shop"] == "frequency-encoded"


# --------------------------------------------------------------------------- targets as they come


def test_yes_no_target_with_a_three_percent_minority(tmp_path: Path) -> None:
    p = tmp_path / "rare.csv"
    n = 400
    rng = np.random.default_rng(0)
    churn = np.where(np.arange(n) % 33 == 0, "yes", "no")  # 13 of 400 rows
    pd.DataFrame({"a": rng.normal(size=n), "churn": churn}).to_csv(p, index=False)
    s = load_and_split(PipelineConfig(data=csv_cfg(p, target="churn")))
    assert s.class_names == ["no", "yes"]
    for y in (s.y_train, s.y_val, s.y_test):
        assert 1 <= int((y == 1).sum()) <= 9  # every split has the minority class


def test_integer_targets_with_gaps_keep_their_names(tmp_path: Path) -> None:
    p = tmp_path / "ints.csv"
    frame = labelled_frame(90)
    frame["label"] = np.array([2, 10, 1])[np.arange(90) % 3].astype(float)
    frame.loc[[4, 5], "label"] = np.nan  # pandas reads the column as floats
    frame.to_csv(p, index=False)
    ds = load_dataset(csv_cfg(p))
    assert ds.class_names == ["1", "2", "10"] and ds.row_counts["dropped_missing_target"] == 2


def test_numbers_written_as_text_sort_as_numbers(tmp_path: Path) -> None:
    p = tmp_path / "text_ints.parquet"
    frame = labelled_frame(90)
    frame["label"] = np.array(["2", "10", "1"])[np.arange(90) % 3]
    frame.to_parquet(p)
    assert load_dataset(csv_cfg(p)).class_names == ["1", "2", "10"]


def test_target_all_missing(tmp_path: Path) -> None:
    p = tmp_path / "none.csv"
    frame = labelled_frame(30)
    frame["label"] = "?"
    frame.to_csv(p, index=False)
    msg = data_error(csv_cfg(p))
    assert msg == f"data file {str(p)!r}: target column 'label' is all missing"
