"""Loading, validating, splitting and scaling data; every bad input is a one-line DataError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from paramaudit import data as data_mod
from paramaudit.config import DataConfig, PipelineConfig, PreprocessConfig, build_config
from paramaudit.data import (
    MAX_CATEGORIES,
    MAX_CLASSES,
    MISSING_CATEGORY,
    Dataset,
    OneHot,
    Splits,
    check_dataset,
    check_inputs,
    check_preprocessing,
    check_split,
    file_digest,
    first_choice,
    fit_onehot,
    fit_preprocessor,
    fit_scaler,
    load_dataset,
    prepare,
    preprocess,
    preprocess_cache_key,
    refit_preprocessing,
    split_and_scale,
)
from paramaudit.errors import ConfigError, DataError, UserInputError

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


# --------------------------------------------------------------------------- more bad files


def test_relative_missing_path_names_the_working_directory(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    msg = data_error(csv_cfg(Path("sub/nope.csv")))
    assert "'sub/nope.csv'" in msg and str(tmp_path) in msg and "working directory" in msg


def test_directory_message(tmp_path: Path) -> None:
    d = tmp_path / "folder.csv"
    d.mkdir()
    assert "is a directory" in data_error(csv_cfg(d))


@pytest.mark.parametrize(("sep", "word"), [(";", "';'"), ("\t", "tabs")])
def test_other_separator_is_named(tmp_path: Path, sep: str, word: str) -> None:
    p = tmp_path / "semi.csv"
    labelled_frame().to_csv(p, index=False, sep=sep, decimal=",")
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and f"separated by {word}" in msg


def test_continuous_target_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "reg.csv"
    frame = labelled_frame()
    frame["price"] = np.linspace(1.5, 99.5, len(frame))
    frame.drop(columns="label").to_csv(p, index=False)
    msg = data_error(csv_cfg(p, target="price"))
    assert "'price' has 90 distinct values in 90 rows" in msg and "regression" in msg


def test_too_many_classes_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "many.csv"
    n = (MAX_CLASSES + 1) * 3
    pd.DataFrame({"a": np.arange(n), "label": np.arange(n) % (MAX_CLASSES + 1)}).to_csv(p, index=False)
    assert f"{MAX_CLASSES + 1} distinct values" in data_error(csv_cfg(p))


def test_numeric_column_with_placeholders(tmp_path: Path) -> None:
    p = tmp_path / "q.csv"
    frame = labelled_frame().astype({"count": object})
    frame.loc[[3, 40], "count"] = "?"
    frame.to_csv(p, index=False)
    for mode in ("error", "onehot"):
        msg = data_error(csv_cfg(p, categorical=mode))
        assert "'count' is numeric except for '?'" in msg


def test_non_numeric_message_offers_onehot(tmp_path: Path) -> None:
    p = tmp_path / "text.csv"
    frame = labelled_frame()
    frame["colour"] = "red"
    frame.to_csv(p, index=False)
    assert "data.categorical: onehot" in data_error(csv_cfg(p))


def test_latin1_file_says_utf8(tmp_path: Path) -> None:
    p = tmp_path / "latin.csv"
    p.write_bytes("a,café,label\n1,2,x\n".encode("latin-1"))
    assert "UTF-8" in data_error(csv_cfg(p))


def test_xlsx_says_save_as_csv(tmp_path: Path) -> None:
    p = tmp_path / "book.xlsx"
    p.write_bytes(b"PK\x03\x04 not really")
    assert "save it as CSV" in data_error(csv_cfg(p))


# --------------------------------------------------------------------------- one-hot encoding


def colour_frame(n: int = 90) -> pd.DataFrame:
    frame = labelled_frame(n)
    frame.insert(1, "colour", np.array(["red", "green", "blue"])[(np.arange(n) // 3) % 3])
    frame["flag"] = np.arange(n) % 2 == 0
    return frame


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
    assert s.encoding == {"categorical_columns": ["colour", "flag"], "encoded_columns": len(colour_names) + 2}
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
    s = preprocess(csv_cfg(p, categorical="onehot"), PreprocessConfig(), 0)
    assert s.feature_names == ["colour=blue", "colour=green", "colour=red"]
    assert s.x_train.shape[1] == 3


def test_high_cardinality_categorical_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "ids.csv"
    n = (MAX_CATEGORIES + 1) * 2
    pd.DataFrame({"a": np.arange(n), "cid": [f"C{i}" for i in range(n)],
                  "label": np.arange(n) % 2}).to_csv(p, index=False)
    msg = data_error(csv_cfg(p, categorical="onehot"))
    assert "'cid'" in msg and f"{n} distinct values" in msg


def test_max_rows_subsamples_categorical_rows_too(tmp_path: Path) -> None:
    p = tmp_path / "c.csv"
    frame = colour_frame(300)
    frame.to_csv(p, index=False)
    ds = load_dataset(csv_cfg(p, categorical="onehot", max_rows=60))
    assert len(ds.y) == len(ds.x) == len(ds.categorical) == 60
    # the categorical rows still belong to their numeric rows
    full = load_dataset(csv_cfg(p, categorical="onehot"))
    lookup = {float(f): c for f, c in zip(full.x[:, 0], full.categorical["colour"], strict=True)}
    assert all(lookup[float(f)] == c for f, c in zip(ds.x[:, 0], ds.categorical["colour"], strict=True))


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
    assert prep.describe() == {"scaler": "standard", "pca_requested": None, "pca_components": None,
                               "explained_variance": None, "n_in": 6, "n_out": 6}


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


# --------------------------------------------------------------------------- split_and_scale + preprocessing


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
    s = preprocess(DataConfig(dataset="digits"), PreprocessConfig(pca_components=20), 0)
    assert s.input_shape == (20,) and s.image_shape == (1, 8, 8)
    assert refit_preprocessing(s, "standard", None).input_shape == (1, 8, 8)


def test_image_shape_declared_for_a_csv(tmp_path: Path) -> None:
    p = tmp_path / "pix.csv"
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(60, 12)), columns=[f"p{i}" for i in range(12)])
    frame["label"] = np.arange(60) % 3
    frame.to_csv(p, index=False)
    ds = load_dataset(csv_cfg(p, image_shape=[3, 2, 2]))
    assert ds.image_shape == (3, 2, 2)
    s = preprocess(csv_cfg(p, image_shape=[3, 2, 2]), PreprocessConfig(augment=True), 0)
    assert s.input_shape == (3, 2, 2)
    msg = data_error(csv_cfg(p, image_shape=[1, 3, 3]))
    assert msg.startswith("config: data.image_shape:") and "12 feature columns" in msg


def test_image_shape_with_categorical_columns_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "c.csv"
    colour_frame().to_csv(p, index=False)
    msg = data_error(csv_cfg(p, categorical="onehot", image_shape=[1, 1, 3]))
    assert "data.image_shape" in msg and "categorical" in msg


# --------------------------------------------------------------------------- checks against the config


def pipeline_cfg(tmp_path: Path, frame: pd.DataFrame | None = None, **raw: object) -> PipelineConfig:
    p = tmp_path / "d.csv"
    (colour_frame() if frame is None else frame).to_csv(p, index=False)
    data = {"path": str(p), "target": "label", **raw.pop("data", {})}  # type: ignore[arg-type]
    return build_config({"data": data, **raw})


def config_problem(cfg: PipelineConfig) -> str:
    with pytest.raises(UserInputError) as info:
        check_inputs(cfg)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(("config: ", "data ")), msg
    return msg


def test_pca_is_checked_against_features_after_onehot(tmp_path: Path) -> None:
    # f1, f2, count + colour (3) + flag (2) = 8 columns after one-hot
    ok = pipeline_cfg(tmp_path, data={"categorical": "onehot"}, preprocess={"pca_components": 8})
    check_inputs(ok)
    assert prepare(ok).n_features == 8
    bad = pipeline_cfg(tmp_path, data={"categorical": "onehot"},
                       preprocess={"pca_components": {"choice": [2, 9]}})
    msg = config_problem(bad)
    assert msg.startswith("config: preprocess.pca_components: 9 components")
    assert "8 feature columns (5 of them from one-hot encoding)" in msg


def test_every_pca_choice_is_checked(tmp_path: Path) -> None:
    frame = labelled_frame()
    pca = {"choice": [None, 0.5, 4]}
    msg = config_problem(pipeline_cfg(tmp_path, frame, preprocess={"pca_components": pca}))
    assert "4 components" in msg and "3 feature columns" in msg


def test_augment_needs_image_data(tmp_path: Path) -> None:
    augment = {"choice": [False, True]}
    msg = config_problem(pipeline_cfg(tmp_path, labelled_frame(), preprocess={"augment": augment}))
    assert msg.startswith("config: preprocess.augment:") and "tabular" in msg
    check_inputs(pipeline_cfg(tmp_path, labelled_frame(), preprocess={"augment": False}))
    check_inputs(build_config({"data": {"dataset": "digits"}, "preprocess": {"augment": True}}))
    with pytest.raises(ConfigError):  # preprocess() checks it too
        preprocess(pipeline_cfg(tmp_path, labelled_frame()).data, PreprocessConfig(augment=True), 0)


@pytest.mark.parametrize("model", ["cnn", {"choice": ["mlp", "cnn"]}])
def test_cnn_needs_image_data(tmp_path: Path, model: object) -> None:
    msg = config_problem(pipeline_cfg(tmp_path, labelled_frame(), model=model))
    assert msg.startswith("config: model: cnn needs image data")


def test_cnn_on_digits_is_fine_but_not_with_pca() -> None:
    check_inputs(build_config({"model": "cnn"}))
    msg = config_problem(build_config({"model": "cnn", "preprocess": {"pca_components": 0.9}}))
    assert msg.startswith("config: preprocess.pca_components: PCA flattens the image")


def test_cnn_kernel_larger_than_the_image(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(60, 4)), columns=list("abcd"))
    frame["label"] = np.arange(60) % 3
    cfg = pipeline_cfg(tmp_path, frame, model="cnn", data={"image_shape": [1, 2, 2]},
                       search={"space": {"kernel_size": {"choice": [1, 3]}}})
    msg = config_problem(cfg)
    assert msg.startswith("config: search.space.kernel_size: 3 is larger than the 2x2 images")
    cfg.search.space = {"kernel_size": 1}
    check_inputs(cfg)


def test_cv_folds_need_rows_of_every_class(tmp_path: Path) -> None:
    frame = labelled_frame(90)  # 30 per class, 18 per class outside the test split
    check_inputs(pipeline_cfg(tmp_path, frame, search={"cv_folds": 5}))
    frame.loc[:8, "label"] = "cat"  # ... unless one class is small
    small = frame[~((frame["label"] == "emu") & (frame.index > 20))]
    msg = config_problem(pipeline_cfg(tmp_path, small, search={"cv_folds": 5}))
    assert msg.startswith("config: search.cv_folds: 5 stratified folds") and "'emu'" in msg


def test_cv_folds_more_than_rows() -> None:
    ds = Dataset(np.arange(12, dtype=np.float32)[:, None], np.arange(12) % 2, ["a"], ["x", "y"], "tiny", "h")
    cfg = build_config({"search": {"cv_folds": 11}})  # 10 rows outside the test split
    with pytest.raises(ConfigError) as info:
        check_split(cfg, ds)
    assert "search.cv_folds: 11 folds" in str(info.value) and "only 10 rows" in str(info.value)


def test_split_too_small_is_caught_before_splitting(tmp_path: Path) -> None:
    frame = labelled_frame(9)
    msg = config_problem(pipeline_cfg(tmp_path, frame, data={"val_size": 0.4, "test_size": 0.4}))
    assert "too few" in msg and "data.val_size" in msg


def test_check_preprocessing_accepts_defaults() -> None:
    ds = load_dataset(DataConfig(dataset="iris"))
    check_preprocessing(build_config({"data": {"dataset": "iris"}}), ds)


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
    monkeypatch.setattr(data_mod, "_builtin", refuse)
    assert preprocess_cache_key(csv_cfg(p), PreprocessConfig(), 0)
    digits = preprocess_cache_key(DataConfig(dataset="digits"), PreprocessConfig(), 0)
    assert digits == preprocess_cache_key(DataConfig(dataset="digits"), PreprocessConfig(), 0)
    assert digits != preprocess_cache_key(DataConfig(dataset="iris"), PreprocessConfig(), 0)


def test_cache_key_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        preprocess_cache_key(csv_cfg(tmp_path / "gone.csv"), PreprocessConfig(), 0)


# --------------------------------------------------------------------------- compressed CSV, bounded reads

COMPRESSED = ["gz", "bz2", "xz", "zst", "zip"]


def same_dataset(a: Dataset, b: Dataset) -> None:
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert (a.feature_names, a.class_names) == (b.feature_names, b.class_names)


@pytest.mark.parametrize("ext", COMPRESSED)
def test_compressed_csv_loads_the_same_dataset_as_plain(tmp_path: Path, ext: str) -> None:
    frame = labelled_frame()
    frame.to_csv(tmp_path / "plain.csv", index=False)
    packed = tmp_path / f"data.csv.{ext}"
    frame.to_csv(packed, index=False)  # pandas infers the compression from the name
    assert packed.read_bytes()[:64] != (tmp_path / "plain.csv").read_bytes()[:64]
    same_dataset(load_dataset(csv_cfg(packed)), load_dataset(csv_cfg(tmp_path / "plain.csv")))


@pytest.mark.parametrize("ext", COMPRESSED)
def test_checks_read_the_decompressed_text(tmp_path: Path, ext: str) -> None:
    # the duplicate-header and separator checks see the CSV inside, not the compressed bytes
    frame = labelled_frame()
    frame.to_csv(tmp_path / f"semi.csv.{ext}", index=False, sep=";")
    assert "separated by ';'" in data_error(csv_cfg(tmp_path / f"semi.csv.{ext}"))
    frame.columns = ["f1", "f1", "count", "label"]
    frame.to_csv(tmp_path / f"dupes.csv.{ext}", index=False)
    assert "duplicate column names f1" in data_error(csv_cfg(tmp_path / f"dupes.csv.{ext}"))


def test_corrupt_gzip_is_one_line_naming_the_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv.gz"
    p.write_bytes(b"f1,label\n1,a\n")  # plain text with a .gz name
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and "corrupt or truncated gzip file" in msg


@pytest.mark.parametrize("rows", [30, 30_000])  # cut inside the header, or past the part sniffed
def test_truncated_gzip_is_one_line(tmp_path: Path, rows: int) -> None:
    whole = tmp_path / "whole.csv.gz"
    pd.concat([labelled_frame()] * (rows // 30 or 1)).to_csv(whole, index=False)
    p = tmp_path / "cut.csv.gz"
    p.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and "corrupt or truncated gzip file" in msg


@pytest.mark.parametrize("ext", ["bz2", "xz", "zst", "zip"])
def test_other_corrupt_compressions_are_one_line(tmp_path: Path, ext: str) -> None:
    p = tmp_path / f"bad.csv.{ext}"
    p.write_bytes(b"not compressed at all\n" * 10)
    assert f"data file {str(p)!r}: a corrupt or truncated" in data_error(csv_cfg(p))


def test_gzip_of_binary_garbage_is_binary_content(tmp_path: Path) -> None:
    import gzip

    p = tmp_path / "garbage.csv.gz"
    p.write_bytes(gzip.compress(np.random.default_rng(0).bytes(5000) + b"\x00" * 64))
    assert "binary content" in data_error(csv_cfg(p))


def test_zip_of_two_files_is_refused(tmp_path: Path) -> None:
    import zipfile

    p = tmp_path / "two.csv.zip"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("a.csv", "f1,label\n1,a\n")
        zf.writestr("b.csv", "f1,label\n1,a\n")
    assert "a zip archive of 2 files" in data_error(csv_cfg(p))


@pytest.mark.parametrize("name", ["data.gz", "data.parquet.gz", "data.tar.gz"])
def test_compressed_non_csv_is_unsupported(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    p.write_bytes(b"\x1f\x8b not read")
    msg = data_error(csv_cfg(p))
    assert "unsupported format" in msg and ".csv.gz" in msg


@pytest.mark.parametrize("ext", ["", ".gz"])
def test_unicode_file_and_column_names(tmp_path: Path, ext: str) -> None:
    frame = labelled_frame().rename(columns={"f1": "größe", "f2": "長さ", "label": "étiquette"})
    p = tmp_path / f"données_データ.csv{ext}"
    frame.to_csv(p, index=False)
    ds = load_dataset(csv_cfg(p, target="étiquette"))
    assert ds.feature_names == ["größe", "長さ", "count"] and ds.class_names == ["cat", "dog", "emu"]
    assert "did you mean 'étiquette'" in data_error(csv_cfg(p, target="etiquette"))


def test_a_header_without_a_line_break_is_read_only_so_far(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_mod, "MAX_HEADER_BYTES", 1 << 16)  # the real bound is 8 MiB
    p = tmp_path / "one_line.csv.gz"
    pd.DataFrame({"x" * 200_000: []}).to_csv(p, index=False, lineterminator="")
    assert "no line break in the first 65,536 bytes" in data_error(csv_cfg(p))


def test_an_overlong_column_name_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "long.csv"
    p.write_text("a" * 5000 + ",label\n1,x\n")
    msg = data_error(csv_cfg(p))
    assert "column 1's name is 5,000 characters (at most 1,000)" in msg and len(msg) < 300


def test_messages_about_names_stay_short(tmp_path: Path) -> None:
    p = tmp_path / "many.csv"
    names = [f"col{i}_{'n' * 100}" for i in range(50)] * 2 + ["label"]
    p.write_text(",".join(names) + "\n" + ",".join(["1"] * 100 + ["a"]) + "\n")
    msg = data_error(csv_cfg(p))
    assert "duplicate column names" in msg and "(and 45 more)" in msg and len(msg) < 400
    labelled_frame().to_csv(tmp_path / "ok.csv", index=False)
    msg = data_error(csv_cfg(tmp_path / "ok.csv", target="t" * 1_000_000))
    assert "target column 'tttt" in msg and "(1,000,000 characters)" in msg and len(msg) < 300
