"""The data's columns and classes, and the data against the config (paramaudit.data.checks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.tables import colour_frame, csv_cfg, data_error, labelled_frame

from paramaudit.config import DataConfig, PipelineConfig, PreprocessConfig, build_config
from paramaudit.data.checks import (
    MAX_CATEGORIES,
    MAX_CLASSES,
    check_dataset,
    check_inputs,
    check_preprocessing,
    check_split,
    load_and_split,
    load_dataset,
)
from paramaudit.data.read import Dataset
from paramaudit.errors import ConfigError, DataError, UserInputError

# --------------------------------------------------------------------------- the target and the classes


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


def test_rows_without_a_target_are_dropped_and_counted(tmp_path: Path) -> None:
    p = tmp_path / "holes.csv"
    frame = labelled_frame().astype({"label": object})
    frame.loc[[2, 7], "label"] = None
    frame.loc[11, "label"] = "?"  # a placeholder is missing too
    frame.to_csv(p, index=False)
    ds = load_dataset(csv_cfg(p))
    assert len(ds.y) == 87 and ds.row_counts == {"read": 90, "dropped_missing_target": 3}
    assert ds.class_names == ["cat", "dog", "emu"]
    kept = frame.drop(index=[2, 7, 11])
    np.testing.assert_allclose(ds.x[:, 0], kept["f1"].to_numpy(), rtol=1e-6)
    target = next(r for r in ds.columns_report if r["column"] == "label")
    assert target["kind"] == "target" and "3 rows without one dropped" in target["action"]
    s = load_and_split(PipelineConfig(data=csv_cfg(p)))
    assert s.row_counts == {"read": 90, "dropped_missing_target": 3, **s.sizes()}
    assert sum(s.sizes().values()) == 87


def test_continuous_target_as_classes_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "reg.csv"
    frame = labelled_frame()
    frame["price"] = np.linspace(1.5, 99.5, len(frame))
    frame.drop(columns="label").to_csv(p, index=False)
    with pytest.raises(DataError) as info:
        load_dataset(csv_cfg(p, target="price"), task="classification")
    msg = str(info.value)
    assert "'price' has 90 distinct values in 90 rows, too many to be classes" in msg
    assert "set task: regression" in msg and "bin it into classes" in msg
    # task auto: the same file is a regression now
    assert load_dataset(csv_cfg(p, target="price")).y.dtype == np.float64


def test_too_many_classes_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "many.csv"
    n = (MAX_CLASSES + 1) * 3
    pd.DataFrame({"a": np.arange(n), "label": np.arange(n) % (MAX_CLASSES + 1)}).to_csv(p, index=False)
    with pytest.raises(DataError, match=f"{MAX_CLASSES + 1} distinct values"):
        load_dataset(csv_cfg(p), task="classification")


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
    # load_dataset checks the classes before subsampling: a stratified subsample of a class
    # with one sample would escape from sklearn as a plain ValueError, not a DataError
    p = tmp_path / "single.csv"
    frame = labelled_frame()
    frame.loc[0, "label"] = "yak"
    frame.to_csv(p, index=False)
    msg = data_error(csv_cfg(p, max_rows=60))
    assert str(p) in msg and "'yak'" in msg


def test_check_dataset_accepts_three_per_class() -> None:
    ds = Dataset(np.zeros((6, 1), np.float32), np.array([0, 0, 0, 1, 1, 1]), ["a"], ["x", "y"], "n", "h")
    check_dataset(ds)  # no error
    ds.y = np.array([0, 0, 0, 0, 1, 1])
    with pytest.raises(DataError):
        check_dataset(ds)


# --------------------------------------------------------------------------- feature columns


@pytest.mark.parametrize("bad", ["inf", "-inf"])
def test_infinite_features(tmp_path: Path, bad: str) -> None:
    p = tmp_path / "bad.csv"
    frame = labelled_frame().astype({"f2": object})
    frame.loc[5, "f2"] = bad
    frame.to_csv(p, index=False)
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and "infinite values in feature columns f2" in msg and "f1" not in msg


@pytest.mark.parametrize("gap", ["nan", "", "NA", "?", " ? ", "n/a", "-"])
def test_missing_numeric_values_are_gaps_not_errors(tmp_path: Path, gap: str) -> None:
    p = tmp_path / "gaps.csv"
    frame = labelled_frame().astype({"f2": object})
    frame.loc[[5, 9], "f2"] = gap
    frame.to_csv(p, index=False)
    ds = load_dataset(csv_cfg(p))
    assert ds.feature_names == ["f1", "f2", "count"] and ds.x.dtype == np.float32
    assert np.isnan(ds.x[[5, 9], 1]).all() and np.isnan(ds.x).sum() == 2
    row = next(r for r in ds.columns_report if r["column"] == "f2")
    assert row["kind"] == "numeric" and row["missing_share"] == round(2 / 90, 4)


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
    frame["colour"] = np.array(["red", "blue"])[np.arange(90) % 2]
    frame.to_csv(p, index=False)
    msg = data_error(csv_cfg(p, categorical="error"))
    assert str(p) in msg and "colour" in msg and "non-numeric" in msg
    assert "data.categorical: auto or onehot" in msg
    assert load_dataset(csv_cfg(p)).categorical_columns == ["colour"]  # auto, the default


@pytest.mark.parametrize("mode", ["auto", "error", "onehot"])
def test_numeric_column_with_a_typo(tmp_path: Path, mode: str) -> None:
    p = tmp_path / "q.csv"
    frame = labelled_frame().astype({"count": object})
    frame.loc[[3, 40], "count"] = "1O"
    frame.loc[7, "count"] = "?"  # a placeholder for a gap, not a typo
    frame.to_csv(p, index=False)
    msg = data_error(csv_cfg(p, categorical=mode))
    assert "'count' is numeric except for '1O'; fix those values" in msg
    assert "data.columns: {'count': numeric}" in msg
    ds = load_dataset(csv_cfg(p, columns={"count": "numeric"}))  # what the message offers
    assert np.isnan(ds.x[[3, 7, 40], 2]).all() and np.isnan(ds.x).sum() == 3


def test_onehot_refuses_a_column_of_too_many_categories(tmp_path: Path) -> None:
    p = tmp_path / "many.csv"
    n = (MAX_CATEGORIES + 1) * 3
    pd.DataFrame({"a": np.random.default_rng(0).normal(size=n),
                  "shop": [f"S{i % (MAX_CATEGORIES + 1)}" for i in range(n)],
                  "label": np.arange(n) % 2}).to_csv(p, index=False)
    msg = data_error(csv_cfg(p, categorical="onehot"))
    assert "'shop'" in msg and f"{MAX_CATEGORIES + 1} distinct values" in msg
    assert "data.categorical: auto" in msg
    assert load_dataset(csv_cfg(p)).categorical_columns == ["shop"]  # auto: frequency-encoded


# --------------------------------------------------------------------------- max_rows and image_shape


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


def test_image_shape_declared_for_a_csv(tmp_path: Path) -> None:
    p = tmp_path / "pix.csv"
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(60, 12)), columns=[f"p{i}" for i in range(12)])
    frame["label"] = np.arange(60) % 3
    frame.to_csv(p, index=False)
    ds = load_dataset(csv_cfg(p, image_shape=[3, 2, 2]))
    assert ds.image_shape == (3, 2, 2)
    s = load_and_split(PipelineConfig(data=csv_cfg(p, image_shape=[3, 2, 2]),
                                      preprocess=PreprocessConfig(augment=True)))
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
    assert load_and_split(ok).n_features == 8
    bad = pipeline_cfg(tmp_path, data={"categorical": "onehot"},
                       preprocess={"pca_components": {"choice": [2, 9]}})
    msg = config_problem(bad)
    assert msg.startswith("config: preprocess.pca_components: 9 components")
    assert "8 feature columns (5 of them from encoding categorical columns)" in msg


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
    with pytest.raises(ConfigError):  # load_and_split() checks it too
        load_and_split(pipeline_cfg(tmp_path, labelled_frame(), preprocess={"augment": True}))


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


# --------------------------------------------------------------------------- load_and_split: step 1


def test_csv_end_to_end_preprocess(tmp_path: Path) -> None:
    p = tmp_path / "animals.csv"
    labelled_frame().to_csv(p, index=False)
    s = load_and_split(PipelineConfig(data=csv_cfg(p)))
    assert sum(s.sizes().values()) == 90
    assert s.input_shape == (3,) and s.n_classes == 3


def test_digits_splits_carry_image_shape() -> None:
    s = load_and_split(PipelineConfig(data=DataConfig(dataset="digits")))
    assert s.input_shape == (1, 8, 8)
    assert s.n_features == 64 and s.n_classes == 10
    iris = load_and_split(PipelineConfig(data=DataConfig(dataset="iris")))
    assert iris.input_shape == (4,)
