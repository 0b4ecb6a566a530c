"""Splitting, scaling, one-hot encoding and PCA, fitted on the train split only (data.preprocess)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.tables import colour_frame, csv_cfg, indexed_dataset

from paramaudit.config import DataConfig, PipelineConfig, PreprocessConfig
from paramaudit.data.checks import MISSING_CATEGORY, load_and_split, load_dataset
from paramaudit.data.preprocess import (
    OneHot,
    Splits,
    first_choice,
    fit_onehot,
    fit_preprocessor,
    fit_scaler,
    refit_preprocessing,
    split_and_scale,
)
from paramaudit.data.read import Dataset
from paramaudit.errors import DataError

# --------------------------------------------------------------------------- splits


def split_ids(ds: Dataset, val: float = 0.2, test: float = 0.2, seed: int = 0) -> tuple[set, set, set]:
    s = split_and_scale(ds, DataConfig(val_size=val, test_size=test), PreprocessConfig(scaler="none"), seed)
    return tuple({int(v) for v in arr[:, 0]} for arr in (s.x_train, s.x_val, s.x_test))  # type: ignore[return-value]


def test_split_sizes() -> None:
    s = load_and_split(PipelineConfig(data=DataConfig(dataset="digits", val_size=0.2, test_size=0.2)))
    sizes = s.sizes()
    assert sum(sizes.values()) == 1797
    assert sizes["test"] == round(0.2 * 1797)
    assert sizes["val"] == round(0.2 * 1797)
    assert sizes["train"] == 1797 - 2 * round(0.2 * 1797)
    assert s.x_train.shape == (sizes["train"], 64)
    assert s.x_val.shape == (sizes["val"], 64) and s.x_test.shape == (sizes["test"], 64)
    assert s.x_train.dtype == np.float32


def test_splits_are_disjoint_and_cover_every_row() -> None:
    ds = indexed_dataset()
    train, val, test = split_ids(ds)
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == set(range(len(ds.y)))
    assert (len(train), len(val), len(test)) == (180, 60, 60)


def test_split_labels_follow_their_rows() -> None:
    ds = indexed_dataset()
    s = split_and_scale(ds, DataConfig(), PreprocessConfig(scaler="none"), 0)
    for x, y in ((s.x_train, s.y_train), (s.x_val, s.y_val), (s.x_test, s.y_test)):
        np.testing.assert_array_equal(ds.y[x[:, 0].astype(int)], y)


def test_stratification_keeps_class_proportions() -> None:
    ds = indexed_dataset(600, classes=(360, 180, 60))
    s = split_and_scale(ds, DataConfig(val_size=0.2, test_size=0.2), PreprocessConfig(), seed=3)
    overall = np.bincount(ds.y) / len(ds.y)
    for y in (s.y_train, s.y_val, s.y_test):
        share = np.bincount(y, minlength=3) / len(y)
        np.testing.assert_allclose(share, overall, atol=0.02)


def test_digits_stratified() -> None:
    s = load_and_split(PipelineConfig(data=DataConfig(dataset="digits"), seed=1))
    overall = np.bincount(np.concatenate([s.y_train, s.y_val, s.y_test])) / 1797
    for y in (s.y_train, s.y_val, s.y_test):
        np.testing.assert_allclose(np.bincount(y, minlength=10) / len(y), overall, atol=0.02)


def test_split_depends_on_seed_and_is_reproducible() -> None:
    ds = indexed_dataset()
    assert split_ids(ds, seed=1) == split_ids(ds, seed=1)
    assert split_ids(ds, seed=1) != split_ids(ds, seed=2)


def test_too_few_rows_for_a_split() -> None:
    ds = Dataset(np.arange(8, dtype=np.float32)[:, None], np.array([0, 0, 0, 1, 1, 1, 2, 2]),
                 ["a"], ["x", "y", "z"], "tiny", "h")
    with pytest.raises(DataError) as info:
        split_and_scale(ds, DataConfig(), PreprocessConfig(), 0)
    assert "tiny" in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- scaling (no leakage)


def row_ids(s: Splits, x: np.ndarray) -> np.ndarray:
    """Undo the scaling of the row-id column to find which rows a split holds."""
    return (x[:, 0] * s.scaler.scale[0] + s.scaler.shift[0]).round().astype(int)


def test_standard_scaler_fitted_on_train_only() -> None:
    ds = indexed_dataset(400)
    s = split_and_scale(ds, DataConfig(), PreprocessConfig(scaler="standard"), seed=0)
    np.testing.assert_allclose(s.x_train.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(s.x_train.std(axis=0), 1.0, atol=1e-4)
    # val and test went through the train statistics, so they are not exactly standardised
    for x in (s.x_val, s.x_test):
        assert np.abs(x[:, 1:].mean(axis=0)).max() > 1e-3
        assert np.abs(x[:, 1:].std(axis=0) - 1).max() > 1e-3
    # the shift/scale are the train rows' own statistics, not the whole data set's
    train_raw = ds.x[row_ids(s, s.x_train)]
    np.testing.assert_allclose(s.scaler.shift, train_raw.mean(axis=0), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(s.scaler.scale, train_raw.std(axis=0), rtol=1e-4, atol=1e-3)
    assert not np.allclose(s.scaler.shift[1:], ds.x.mean(axis=0)[1:], atol=1e-6)


def test_val_and_test_rows_use_train_statistics_exactly() -> None:
    ds = indexed_dataset(400)
    s = split_and_scale(ds, DataConfig(), PreprocessConfig(scaler="standard"), seed=0)
    for x in (s.x_val, s.x_test):
        raw = ds.x[row_ids(s, x)]
        np.testing.assert_allclose(x, (raw - s.scaler.shift) / s.scaler.scale, rtol=1e-5, atol=1e-5)


def test_minmax_scaler() -> None:
    s = split_and_scale(indexed_dataset(400), DataConfig(), PreprocessConfig(scaler="minmax"), 0)
    np.testing.assert_allclose(s.x_train.min(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(s.x_train.max(axis=0), 1.0, atol=1e-6)
    # val/test can fall outside [0, 1]: the range is the train split's
    assert s.scaler.kind == "minmax"


def test_robust_scaler() -> None:
    s = split_and_scale(indexed_dataset(400), DataConfig(), PreprocessConfig(scaler="robust"), 0)
    np.testing.assert_allclose(np.median(s.x_train, axis=0), 0.0, atol=1e-5)
    q1, q3 = np.percentile(s.x_train, [25, 75], axis=0)
    np.testing.assert_allclose(q3 - q1, 1.0, atol=1e-5)


def test_none_scaler_is_identity() -> None:
    ds = indexed_dataset(400)
    s = split_and_scale(ds, DataConfig(), PreprocessConfig(scaler="none"), 0)
    np.testing.assert_array_equal(s.x_train, ds.x[s.x_train[:, 0].astype(int)])
    assert s.scaler.kind == "none"


@pytest.mark.parametrize("kind", ["standard", "minmax", "robust", "none"])
def test_constant_column_does_not_divide_by_zero(kind: str) -> None:
    x = np.column_stack([np.full(50, 7.0), np.linspace(0, 1, 50)]).astype(np.float32)
    sc = fit_scaler(x, kind)
    out = sc.transform(x)
    assert np.isfinite(out).all()
    assert sc.scale[0] == 1.0
    if kind != "none":
        np.testing.assert_allclose(out[:, 0], 0.0)


def test_unknown_scaler() -> None:
    with pytest.raises(DataError):
        fit_scaler(np.ones((4, 2), np.float32), "quantile")


# --------------------------------------------------------------------------- one-hot encoding


def test_onehot_encodes_categorical_columns(tmp_path: Path) -> None:
    p = tmp_path / "c.csv"
    frame = colour_frame().astype({"colour": object})
    frame.loc[[0, 1, 2], "colour"] = None  # one row of each class
    frame.to_csv(p, index=False)
    ds = load_dataset(csv_cfg(p, categorical="onehot"))
    assert ds.feature_names == ["f1", "f2", "count"] and ds.x.shape == (90, 3)
    assert ds.categorical_columns == ["colour", "flag"]
    assert set(ds.categorical["colour"]) == {"red", "green", "blue", MISSING_CATEGORY}
    s = split_and_scale(ds, csv_cfg(p, categorical="onehot"), PreprocessConfig(scaler="none"), 0)
    colour_names = [n for n in s.feature_names if n.startswith("colour=")]
    assert s.feature_names[:3] == ["f1", "f2", "count"]
    assert s.feature_names[3:] == colour_names + ["flag=False", "flag=True"]
    # the 3 missing colours are fewer than data.min_category_count: pooled into (other)
    assert colour_names == ["colour=blue", "colour=green", "colour=red", "colour=(other)"]
    assert s.encoding["categorical_columns"] == ["colour", "flag"]
    assert s.encoding["encoded_columns"] == len(colour_names) + 2
    assert s.encoding["onehot_columns"] == ["colour", "flag"] and s.encoding["mode"] == "onehot"
    assert s.n_features == 3 + s.encoding["encoded_columns"] == s.raw_train.shape[1]
    assert s.input_shape == (s.n_features,)
    # every row has exactly one 1 per column in its block (all categories seen in train here)
    for raw in (s.raw_train, s.raw_val, s.raw_test):
        block = raw[:, 3:3 + len(colour_names)]
        assert set(np.unique(block)) <= {0.0, 1.0}
        assert (block.sum(axis=1) <= 1).all()
        np.testing.assert_array_equal(raw[:, -2:].sum(axis=1), 1.0)


def test_onehot_categories_come_from_the_train_split_only() -> None:
    base = indexed_dataset(300)
    s0 = split_and_scale(base, DataConfig(), PreprocessConfig(scaler="none"), seed=0)
    test_rows = set(s0.x_test[:, 0].astype(int).tolist())
    val_rows = set(s0.x_val[:, 0].astype(int).tolist())
    colour = ["red" if i % 2 else "blue" for i in range(300)]
    for i in test_rows:
        colour[i] = "only-in-test"
    for i in sorted(val_rows)[:5]:
        colour[i] = "only-in-val"
    ds = Dataset(base.x, base.y, base.feature_names, base.class_names, "cats", "h",
                 categorical=pd.DataFrame({"colour": colour}))
    s = split_and_scale(ds, DataConfig(), PreprocessConfig(scaler="none"), seed=0)
    assert s.feature_names[4:] == ["colour=blue", "colour=red"]
    assert s.encoding["encoded_columns"] == 2
    # unseen categories at val/test time: all zeros, no crash
    np.testing.assert_array_equal(s.raw_test[:, 4:], 0.0)
    ids = s.raw_val[:, 0].astype(int)
    unseen = np.isin(ids, sorted(val_rows)[:5])
    assert unseen.sum() == 5
    np.testing.assert_array_equal(s.raw_val[unseen, 4:], 0.0)
    np.testing.assert_array_equal(s.raw_val[~unseen, 4:].sum(axis=1), 1.0)


def test_onehot_transform_unseen_is_zero() -> None:
    enc = fit_onehot(pd.DataFrame({"c": ["a", "b", "a"], "d": ["x", "x", "y"]}))
    assert enc.names() == ["c=a", "c=b", "d=x", "d=y"] and enc.n_out == 4
    out = enc.transform(pd.DataFrame({"c": ["b", "zzz"], "d": ["y", "new"]}))
    np.testing.assert_array_equal(out, [[0, 1, 0, 1], [0, 0, 0, 0]])
    assert out.dtype == np.float32
    assert isinstance(enc, OneHot)


def test_all_features_categorical(tmp_path: Path) -> None:
    p = tmp_path / "cats.csv"
    frame = colour_frame()[["colour", "label"]]
    frame.to_csv(p, index=False)
    s = load_and_split(PipelineConfig(data=csv_cfg(p, categorical="onehot")))
    assert s.feature_names == ["colour=blue", "colour=green", "colour=red"]
    assert s.x_train.shape[1] == 3


# --------------------------------------------------------------------------- the preprocessor


def wide_data(n: int = 200, d: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 2))
    mix = rng.normal(size=(2, d))
    return (base @ mix + 0.05 * rng.normal(size=(n, d)) + np.arange(d)).astype(np.float32)


def test_preprocessor_without_pca_is_the_scaler() -> None:
    x = wide_data()
    prep = fit_preprocessor(x, "standard", None)
    assert prep.n_out == 6 and prep.components is None
    np.testing.assert_allclose(prep.transform(x), fit_scaler(x, "standard").transform(x))
    assert prep.describe() == {"impute": "median", "missing_indicators": 0, "scaler": "standard",
                               "pca_requested": None, "pca_components": None,
                               "explained_variance": None, "n_in": 6, "n_out": 6}
    clean = fit_preprocessor(x, "standard", None, impute_columns=(), indicator_columns=())
    assert clean.describe()["impute"] is None and clean.imputer is None


def test_pca_integer_matches_sklearn() -> None:
    from sklearn.decomposition import PCA

    x = wide_data()
    prep = fit_preprocessor(x, "standard", 3)
    out = prep.transform(x)
    assert out.shape == (200, 3) and out.dtype == np.float32 and prep.n_out == 3
    ref = PCA(3).fit(fit_scaler(x, "standard").transform(x))
    np.testing.assert_allclose(np.abs(out), np.abs(ref.transform(fit_scaler(x, "standard").transform(x))),
                               atol=1e-4)
    assert prep.explained_variance == pytest.approx(ref.explained_variance_ratio_.sum(), abs=1e-5)
    d = prep.describe()
    assert d["pca_components"] == 3 and d["pca_requested"] == 3 and d["scaler"] == "standard"


def test_pca_fraction_keeps_the_fewest_components() -> None:
    x = wide_data()
    scaled = fit_scaler(x, "minmax").transform(x)
    ratio = np.linalg.svd(scaled - scaled.mean(axis=0), compute_uv=False) ** 2
    cum = np.cumsum(ratio / ratio.sum())
    for frac in (0.5, 0.9, 0.99, 0.999):
        prep = fit_preprocessor(x, "minmax", frac)
        k = prep.n_out
        assert cum[k - 1] >= frac - 1e-6
        assert k == 1 or cum[k - 2] < frac
        assert prep.explained_variance == pytest.approx(cum[k - 1], abs=1e-5)
    assert fit_preprocessor(x, "minmax", 1.0).n_out == 6


def test_pca_is_fitted_on_train_rows_and_deterministic() -> None:
    x = wide_data()
    a, b = fit_preprocessor(x, "standard", 2, seed=1), fit_preprocessor(x, "standard", 2, seed=7)
    np.testing.assert_array_equal(a.transform(x), b.transform(x))
    np.testing.assert_allclose(a.transform(x).mean(axis=0), 0.0, atol=1e-4)
    other = wide_data(seed=5)
    assert np.abs(a.transform(other).mean(axis=0)).max() > 1e-3  # val rows use train statistics


def test_pca_on_constant_data_does_not_crash() -> None:
    x = np.ones((20, 4), np.float32)
    prep = fit_preprocessor(x, "standard", 0.95)
    assert prep.n_out == 1 and np.isfinite(prep.transform(x)).all()


@pytest.mark.parametrize(("k", "needle"), [(7, "6 feature columns"), (5, "4 training rows")])
def test_pca_too_many_components(k: int, needle: str) -> None:
    n_rows = 4 if k == 5 else 50
    with pytest.raises(DataError) as info:
        fit_preprocessor(wide_data(n_rows), "standard", k)
    assert str(info.value).startswith("config: preprocess.pca_components:") and needle in str(info.value)


def test_preprocessor_unknown_scaler() -> None:
    with pytest.raises(DataError) as info:
        fit_preprocessor(wide_data(), "quantile", None)
    assert "preprocess.scaler" in str(info.value)


# --------------------------------------------------------------------------- refitting preprocessing


def test_split_uses_the_first_choice_of_searched_fields() -> None:
    pre = PreprocessConfig(scaler={"choice": ["minmax", "standard"]}, pca_components={"choice": [2, None]})
    assert first_choice(pre.scaler) == "minmax" and first_choice("robust") == "robust"
    s = split_and_scale(indexed_dataset(300), DataConfig(), pre, 0)
    assert s.scaler.kind == "minmax" and s.preprocessor.scaler is s.scaler
    assert s.n_features == 2 and s.input_shape == (2,)
    assert s.preprocessor.describe()["pca_components"] == 2
    assert s.raw_train.shape[1] == 4 and s.feature_names == ["row", "a", "b", "c"]


def test_splits_keep_raw_rows_for_refitting() -> None:
    ds = indexed_dataset(300)
    s = split_and_scale(ds, DataConfig(), PreprocessConfig(), 0)
    for raw, x in ((s.raw_train, s.x_train), (s.raw_val, s.x_val), (s.raw_test, s.x_test)):
        np.testing.assert_array_equal(raw, ds.x[raw[:, 0].astype(int)])
        np.testing.assert_allclose(s.scaler.transform(raw), x)
    again = refit_preprocessing(s, "robust", 0.9)
    direct = split_and_scale(ds, DataConfig(), PreprocessConfig(scaler="robust", pca_components=0.9), 0)
    np.testing.assert_allclose(again.x_test, direct.x_test, atol=1e-5)
    assert again.input_shape == direct.input_shape == (direct.n_features,)
    np.testing.assert_array_equal(again.y_test, s.y_test)
    assert s.x_train.shape[1] == 4  # the original is untouched


def test_digits_with_pca_is_flat_and_refit_without_pca_restores_the_image() -> None:
    s = load_and_split(PipelineConfig(data=DataConfig(dataset="digits"),
                                      preprocess=PreprocessConfig(pca_components=20)))
    assert s.input_shape == (20,) and s.image_shape == (1, 8, 8)
    assert refit_preprocessing(s, "standard", None).input_shape == (1, 8, 8)
