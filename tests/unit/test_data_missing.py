"""Missing numeric values: imputation fitted on the train split, missing indicators, and the
same columns in every refit (paramaudit.data.preprocess)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.tables import csv_cfg, indexed_dataset, labelled_frame

from paramaudit.config import DataConfig, PipelineConfig, PreprocessConfig, build_config
from paramaudit.data import (
    fit_preprocessor,
    load_and_split,
    load_dataset,
    refit_preprocessing,
    split_and_scale,
)
from paramaudit.data.cache import preprocess_cache_key
from paramaudit.data.checks import check_inputs
from paramaudit.data.read import Dataset
from paramaudit.errors import UserInputError


def gappy(n: int = 300, seed: int = 0) -> Dataset:
    """indexed_dataset with gaps in column ``a`` (every 7th row) and ``b`` (two rows)."""
    ds = indexed_dataset(n, seed=seed)
    ds.x = ds.x.copy()
    ds.x[::7, 1] = np.nan
    ds.x[[3, 4], 2] = np.nan
    return ds


def rows_of(raw: np.ndarray) -> np.ndarray:
    return raw[:, 0].astype(int)


@pytest.mark.parametrize("impute", ["median", "mean", "most_frequent", "constant"])
def test_imputation_uses_train_statistics_only(impute: str) -> None:
    ds = gappy()
    s = split_and_scale(ds, DataConfig(), PreprocessConfig(scaler="none", impute=impute), 0)
    train_a = s.raw_train[:, 1]
    known = train_a[~np.isnan(train_a)]
    expected = {"median": np.median(known), "mean": known.mean(), "constant": 0.0,
                "most_frequent": None}[impute]
    fill = s.preprocessor.imputer.statistics_[0]
    if expected is not None:
        assert fill == pytest.approx(expected, rel=1e-5)
    # val and test gaps are filled with the same train statistic, not their own
    for raw, x in ((s.raw_train, s.x_train), (s.raw_val, s.x_val), (s.raw_test, s.x_test)):
        gaps = np.isnan(raw[:, 1])
        assert gaps.any()
        np.testing.assert_allclose(x[gaps, 1], fill, rtol=1e-6)
        np.testing.assert_array_equal(x[~gaps, 1], raw[~gaps, 1])
    # changing only val/test values changes nothing that was fitted
    other = gappy()
    other.x[rows_of(s.raw_test), 1] += 1000.0
    s2 = split_and_scale(other, DataConfig(), PreprocessConfig(scaler="none", impute=impute), 0)
    np.testing.assert_array_equal(s2.preprocessor.imputer.statistics_, s.preprocessor.imputer.statistics_)
    assert s.preprocessor.describe()["impute"] == impute


def test_missing_indicators_follow_the_train_split() -> None:
    ds = gappy()
    s = split_and_scale(ds, DataConfig(), PreprocessConfig(scaler="none"), 0)
    b_gaps_in_train = bool(np.isin([3, 4], rows_of(s.raw_train)).any())
    expected = ["a (missing)"] + (["b (missing)"] if b_gaps_in_train else [])
    assert s.input_names() == ["row", "a", "b", "c", *expected]
    assert s.n_features == 4 + len(expected)
    np.testing.assert_array_equal(s.x_train[:, 4], np.isnan(s.raw_train[:, 1]))
    assert s.preprocessor.impute_columns == (1, 2)  # b is imputed wherever its gaps fall
    assert not np.isnan(s.x_val).any() and not np.isnan(s.x_test).any()


def test_refit_keeps_the_columns_and_changes_the_strategy() -> None:
    s = split_and_scale(gappy(), DataConfig(), PreprocessConfig(impute={"choice": ["median", "mean"]}), 0)
    assert s.preprocessor.impute == "median"  # the first choice, until a trial picks another
    r = refit_preprocessing(s, "standard", None, impute="mean")
    assert r.preprocessor.impute == "mean" and r.n_features == s.n_features
    assert r.missing_columns() == s.missing_columns()
    assert refit_preprocessing(s, "minmax", None).preprocessor.impute == "median"


def test_a_fold_refit_has_the_same_width() -> None:
    s = split_and_scale(gappy(), DataConfig(), PreprocessConfig(), 0)
    x = np.concatenate([s.raw_train, s.raw_val])
    fold = x[np.isnan(x[:, 2]) == 0]  # a fold without b's gaps
    prep = fit_preprocessor(fold, "standard", None, 0, **s.missing_columns())
    assert prep.n_out == s.n_features
    free = fit_preprocessor(fold, "standard", None, 0)  # left to itself: only its own gaps
    assert free.n_out == 5


def test_no_gaps_no_imputer_and_the_same_bytes() -> None:
    ds = indexed_dataset()
    s = split_and_scale(ds, DataConfig(), PreprocessConfig(), 0)
    assert s.preprocessor.imputer is None and s.preprocessor.indicator is None
    assert s.preprocessor.describe()["impute"] is None and s.n_features == 4
    np.testing.assert_array_equal(s.x_train, s.scaler.transform(s.raw_train))


def test_image_data_is_imputed_without_indicators(tmp_path: Path) -> None:
    p = tmp_path / "pix.csv"
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(60, 4)), columns=list("abcd"))
    frame.loc[::5, "b"] = np.nan
    frame["label"] = np.arange(60) % 3
    frame.to_csv(p, index=False)
    s = load_and_split(PipelineConfig(data=csv_cfg(p, image_shape=[1, 2, 2])))
    assert s.input_shape == (1, 2, 2) and s.n_features == 4
    assert not np.isnan(s.x_train).any()


def test_pca_counts_the_indicators(tmp_path: Path) -> None:
    p = tmp_path / "g.csv"
    frame = labelled_frame().astype({"f2": object})
    frame.loc[::6, "f2"] = ""
    frame.to_csv(p, index=False)
    data = {"path": str(p), "target": "label"}
    check_inputs(build_config({"data": data, "preprocess": {"pca_components": 4}}))
    with pytest.raises(UserInputError) as info:
        check_inputs(build_config({"data": data, "preprocess": {"pca_components": 5}}))
    assert "4 feature columns (1 missing-value indicators)" in str(info.value)
    s = load_and_split(build_config({"data": data, "preprocess": {"pca_components": 4}}))
    assert s.n_features == 4 and s.input_names() == ["pc1", "pc2", "pc3", "pc4"]


def test_gaps_in_text_numbers_and_categories(tmp_path: Path) -> None:
    p = tmp_path / "mixed.csv"
    frame = labelled_frame().astype({"count": object})
    frame["colour"] = np.array(["red", "blue", None])[np.arange(90) % 3]
    frame.loc[[1, 2, 50], "count"] = "n/a"
    frame.to_csv(p, index=False)
    ds = load_dataset(csv_cfg(p))
    assert set(ds.categorical["colour"]) == {"red", "blue", "(missing)"}
    s = load_and_split(PipelineConfig(data=csv_cfg(p)))
    assert "colour=(missing)" in s.feature_names and "count (missing)" in s.input_names()


def test_cache_key_follows_the_new_settings(tmp_path: Path) -> None:
    p = tmp_path / "animals.csv"
    labelled_frame().to_csv(p, index=False)
    base = preprocess_cache_key(csv_cfg(p), PreprocessConfig(), 0)
    others = {
        preprocess_cache_key(csv_cfg(p), PreprocessConfig(impute="mean"), 0),
        preprocess_cache_key(csv_cfg(p, drop=["f1"]), PreprocessConfig(), 0),
        preprocess_cache_key(csv_cfg(p, columns={"count": "categorical"}), PreprocessConfig(), 0),
        preprocess_cache_key(csv_cfg(p, min_category_count=2), PreprocessConfig(), 0),
        preprocess_cache_key(csv_cfg(p, categorical="frequency"), PreprocessConfig(), 0),
    }
    assert base not in others and len(others) == 5


def test_a_searched_impute_reaches_the_trial_and_keeps_its_width() -> None:
    from paramaudit.search.trainable import trial_data

    s = split_and_scale(gappy(), DataConfig(), PreprocessConfig(), 0)
    data = {"x_train": s.x_train, "y_train": s.y_train, "x_val": s.x_val, "y_val": s.y_val,
            "raw_train": s.raw_train, "raw_val": s.raw_val, "missing_columns": s.missing_columns(),
            "input_shape": s.input_shape, "n_classes": s.n_classes}
    settings = {"seed": 0, "preprocess": {"scaler": "standard", "pca_components": None,
                                          "impute": "median"}}
    (train, val), = trial_data({"impute": "constant"}, data, settings)[0]
    direct = refit_preprocessing(s, "standard", None, impute="constant")
    np.testing.assert_array_equal(train[0], direct.x_train)
    np.testing.assert_array_equal(val[0], direct.x_val)
    folds, shape = trial_data({}, data, {**settings, "cv_folds": 3})
    assert shape == s.input_shape and all(f[0][0].shape[1] == s.n_features for f in folds)


def test_unknown_impute_strategy_is_a_config_error() -> None:
    with pytest.raises(UserInputError) as info:
        build_config({"preprocess": {"impute": {"choice": ["median", "knn"]}}})
    assert "config: preprocess.impute:" in str(info.value) and "most_frequent" in str(info.value)
