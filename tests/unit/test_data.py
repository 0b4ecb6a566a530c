"""Loading, validating, splitting and scaling data; every bad input is a one-line DataError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from paramaudit.config import DataConfig, PreprocessConfig
from paramaudit.data import (
    Dataset,
    Splits,
    check_dataset,
    file_digest,
    fit_scaler,
    load_dataset,
    preprocess,
    split_and_scale,
)
from paramaudit.errors import DataError, UserInputError

# --------------------------------------------------------------------------- helpers


def data_error(cfg: DataConfig) -> str:
    """Load data that must fail; return the message after checking it is one line."""
    with pytest.raises(DataError) as info:
        load_dataset(cfg)
    msg = str(info.value)
    assert "\n" not in msg, f"DataError spans lines: {msg!r}"
    return msg


def csv_cfg(path: Path, target: str = "label", **kw: object) -> DataConfig:
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


def split_ids(ds: Dataset, val: float = 0.2, test: float = 0.2, seed: int = 0) -> tuple[set, set, set]:
    s = split_and_scale(ds, DataConfig(val_size=val, test_size=test), PreprocessConfig(scaler="none"), seed)
    return tuple({int(v) for v in arr[:, 0]} for arr in (s.x_train, s.x_val, s.x_test))  # type: ignore[return-value]


# --------------------------------------------------------------------------- built-in sets


@pytest.mark.parametrize(
    ("name", "rows", "features", "classes", "image"),
    [
        ("digits", 1797, 64, 10, (1, 8, 8)),
        ("iris", 150, 4, 3, None),
        ("wine", 178, 13, 3, None),
        ("breast_cancer", 569, 30, 2, None),
    ],
)
def test_builtin_sets_load(name: str, rows: int, features: int, classes: int,
                           image: tuple[int, ...] | None) -> None:
    ds = load_dataset(DataConfig(dataset=name))
    assert ds.x.shape == (rows, features)
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int64
    assert len(ds.y) == rows
    assert len(ds.class_names) == classes
    assert set(np.unique(ds.y).tolist()) == set(range(classes))
    assert len(ds.feature_names) == features
    assert ds.image_shape == image
    assert ds.name == name
    assert len(ds.content_hash) == 64


def test_builtin_hash_is_stable() -> None:
    a = load_dataset(DataConfig(dataset="iris"))
    b = load_dataset(DataConfig(dataset="iris"))
    c = load_dataset(DataConfig(dataset="wine"))
    assert a.content_hash == b.content_hash != c.content_hash


def test_digits_splits_carry_image_shape() -> None:
    s = preprocess(DataConfig(dataset="digits"), PreprocessConfig(), seed=0)
    assert s.input_shape == (1, 8, 8)
    assert s.n_features == 64 and s.n_classes == 10
    iris = preprocess(DataConfig(dataset="iris"), PreprocessConfig(), seed=0)
    assert iris.input_shape == (4,)


# --------------------------------------------------------------------------- splits


def test_split_sizes() -> None:
    s = preprocess(DataConfig(dataset="digits", val_size=0.2, test_size=0.2), PreprocessConfig(), 0)
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
    s = preprocess(DataConfig(dataset="digits"), PreprocessConfig(), seed=1)
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


# --------------------------------------------------------------------------- files


def test_csv_with_string_labels(tmp_path: Path) -> None:
    p = tmp_path / "animals.csv"
    labelled_frame().to_csv(p, index=False)
    ds = load_dataset(csv_cfg(p))
    assert ds.x.shape == (90, 3)
    assert ds.feature_names == ["f1", "f2", "count"]
    assert ds.class_names == ["cat", "dog", "emu"]
    np.testing.assert_array_equal(ds.y, np.arange(90) % 3)
    assert ds.name == str(p)
    assert ds.image_shape is None
    assert ds.content_hash == file_digest(p)


def test_parquet_with_string_labels(tmp_path: Path) -> None:
    p = tmp_path / "animals.parquet"
    frame = labelled_frame()
    frame.to_parquet(p)
    ds = load_dataset(csv_cfg(p))
    assert ds.x.shape == (90, 3)
    assert ds.class_names == ["cat", "dog", "emu"]
    np.testing.assert_array_equal(ds.y, np.arange(90) % 3)
    np.testing.assert_allclose(ds.x[:, 0], frame["f1"].to_numpy(), rtol=1e-6)


def test_csv_end_to_end_preprocess(tmp_path: Path) -> None:
    p = tmp_path / "animals.csv"
    labelled_frame().to_csv(p, index=False)
    s = preprocess(csv_cfg(p), PreprocessConfig(), seed=0)
    assert sum(s.sizes().values()) == 90
    assert s.input_shape == (3,) and s.n_classes == 3


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.csv"
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and "not found" in msg


def test_directory_instead_of_file(tmp_path: Path) -> None:
    d = tmp_path / "dir.csv"
    d.mkdir()
    assert str(d) in data_error(csv_cfg(d))


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.csv"
    p.write_bytes(b"")
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and "empty" in msg


def test_blank_lines_only(tmp_path: Path) -> None:
    p = tmp_path / "blank.csv"
    p.write_text("\n\n\n")
    assert str(p) in data_error(csv_cfg(p))


def test_header_only(tmp_path: Path) -> None:
    p = tmp_path / "header.csv"
    p.write_text("f1,f2,label\n")
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and "no rows" in msg


def test_unknown_target_suggests(tmp_path: Path) -> None:
    p = tmp_path / "animals.csv"
    labelled_frame().to_csv(p, index=False)
    msg = data_error(csv_cfg(p, target="lable"))
    assert str(p) in msg and "'lable'" in msg and "did you mean 'label'" in msg


def test_target_is_the_only_column(tmp_path: Path) -> None:
    p = tmp_path / "only.csv"
    p.write_text("label\n" + "a\nb\n" * 5)
    assert "feature" in data_error(csv_cfg(p))


def test_one_class(tmp_path: Path) -> None:
    p = tmp_path / "one.csv"
    frame = labelled_frame()
    frame["label"] = "cat"
    frame.to_csv(p, index=False)
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and "one class" in msg


def test_class_with_a_single_sample(tmp_path: Path) -> None:
    p = tmp_path / "single.csv"
    frame = labelled_frame()
    frame.loc[0, "label"] = "yak"
    frame.to_csv(p, index=False)
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and "'yak'" in msg and "1 sample" in msg


def test_class_with_a_single_sample_and_max_rows(tmp_path: Path) -> None:
    # BUG (data.py load_dataset): subsampling with stratify runs before check_dataset, so a
    # class with one sample reaches sklearn and escapes as a plain ValueError, not a DataError.
    p = tmp_path / "single.csv"
    frame = labelled_frame()
    frame.loc[0, "label"] = "yak"
    frame.to_csv(p, index=False)
    msg = data_error(csv_cfg(p, max_rows=60))
    assert str(p) in msg and "'yak'" in msg


@pytest.mark.parametrize("bad", ["nan", "", "inf", "-inf"])
def test_non_finite_features(tmp_path: Path, bad: str) -> None:
    p = tmp_path / "bad.csv"
    frame = labelled_frame().astype({"f2": object})
    frame.loc[5, "f2"] = bad
    frame.to_csv(p, index=False)
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and "f2" in msg and "f1" not in msg


def test_inf_in_parquet(tmp_path: Path) -> None:
    p = tmp_path / "bad.parquet"
    frame = labelled_frame()
    frame.loc[3, "f1"] = np.inf
    frame.to_parquet(p)
    msg = data_error(csv_cfg(p))
    assert "f1" in msg and str(p) in msg


def test_non_numeric_feature(tmp_path: Path) -> None:
    p = tmp_path / "text.csv"
    frame = labelled_frame()
    frame["colour"] = "red"
    frame.to_csv(p, index=False)
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and "colour" in msg and "non-numeric" in msg


def test_duplicate_column_names(tmp_path: Path) -> None:
    p = tmp_path / "dupe.csv"
    p.write_text("a,b,a,label\n" + "".join(f"{i},{i},{i},{'xy'[i % 2]}\n" for i in range(20)))
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and "duplicate" in msg and "a" in msg


def test_binary_garbage_named_csv(tmp_path: Path) -> None:
    p = tmp_path / "garbage.csv"
    p.write_bytes(bytes(range(256)) * 40)
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and "binary" in msg


def test_non_utf8_garbage_named_csv(tmp_path: Path) -> None:
    p = tmp_path / "latin.csv"
    p.write_bytes(b"\xff\xfe\xfa\xc3(" * 200)
    assert str(p) in data_error(csv_cfg(p))


def test_corrupt_parquet(tmp_path: Path) -> None:
    p = tmp_path / "broken.parquet"
    p.write_bytes(b"PAR1 this is not really parquet")
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and "Parquet" in msg


@pytest.mark.parametrize("suffix", [".xlsx", ".json", ".npy"])
def test_unsupported_extension(tmp_path: Path, suffix: str) -> None:
    p = tmp_path / f"data{suffix}"
    p.write_text("f1,label\n1,a\n")
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and suffix in msg


def test_missing_target_values(tmp_path: Path) -> None:
    p = tmp_path / "holes.csv"
    frame = labelled_frame().astype({"label": object})
    frame.loc[[2, 7], "label"] = None
    frame.to_csv(p, index=False)
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and "'label'" in msg and "2 missing" in msg


def test_data_error_is_user_input_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError):
        load_dataset(csv_cfg(tmp_path / "absent.csv"))


def test_check_dataset_accepts_three_per_class() -> None:
    ds = Dataset(np.zeros((6, 1), np.float32), np.array([0, 0, 0, 1, 1, 1]), ["a"], ["x", "y"], "n", "h")
    check_dataset(ds)  # no error
    ds.y = np.array([0, 0, 0, 0, 1, 1])
    with pytest.raises(DataError):
        check_dataset(ds)


# --------------------------------------------------------------------------- max_rows and hashing


def test_max_rows_subsamples_stratified() -> None:
    ds = load_dataset(DataConfig(dataset="digits", max_rows=500))
    assert len(ds.y) == 500 and ds.x.shape == (500, 64)
    share = np.bincount(ds.y, minlength=10) / 500
    np.testing.assert_allclose(share, 0.1, atol=0.02)
    # rows are real rows of the full set, in their original order
    full = load_dataset(DataConfig(dataset="digits"))
    full_rows = {r.tobytes() for r in full.x}
    assert all(r.tobytes() in full_rows for r in ds.x)


def test_max_rows_larger_than_data_is_noop() -> None:
    assert len(load_dataset(DataConfig(dataset="iris", max_rows=1000)).y) == 150


def test_max_rows_is_deterministic(tmp_path: Path) -> None:
    a = load_dataset(DataConfig(dataset="wine", max_rows=60))
    b = load_dataset(DataConfig(dataset="wine", max_rows=60))
    np.testing.assert_array_equal(a.x, b.x)


def test_content_hash_changes_with_the_file(tmp_path: Path) -> None:
    p = tmp_path / "animals.csv"
    frame = labelled_frame()
    frame.to_csv(p, index=False)
    first = load_dataset(csv_cfg(p)).content_hash
    assert load_dataset(csv_cfg(p)).content_hash == first
    frame.loc[0, "f1"] += 1.0
    frame.to_csv(p, index=False)
    second = load_dataset(csv_cfg(p)).content_hash
    assert second != first
    assert second == file_digest(p)
