"""From the config to a checked :class:`Dataset`: a built-in set, or a table read and checked.

A table's target is read first (:mod:`paramaudit.data.target`), then its feature columns
(:mod:`paramaudit.data.features`): each is numeric, categorical, a date or dropped, and at least
one must be left. With ``data.categorical: error`` categorical columns are refused; with
``onehot`` one of more than ``MAX_CATEGORIES`` values is. Then ``data.image_shape`` and
``data.max_rows`` apply, and the result is checked for a stratified split
(:func:`~paramaudit.data.target.check_dataset`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from paramaudit.config import REGRESSION_DATASETS, DataConfig, quote
from paramaudit.data.columns_report import numeric_report, regression_row, target_row
from paramaudit.data.features import Features, build_features, check_column_names, no_usable_features
from paramaudit.data.preprocess import dataset_task
from paramaudit.data.read import (
    Dataset,
    data_label,
    file_digest,
    load_builtin,
    read_table,
    with_numeric_inputs,
)
from paramaudit.data.target import check_dataset, class_order, target_labels
from paramaudit.errors import DataError

MAX_CATEGORIES = 200  # data.categorical: onehot encodes at most this many values of a column


def _short(names: list[str], limit: int = 5) -> str:
    shown = [n if len(n) <= 40 else f"{n[:40]}..." for n in names[:limit]]
    return ", ".join(shown) + (" ..." if len(names) > limit else "")


def _check_categorical(feats: Features, cfg: DataConfig, shown: str) -> None:
    """data.categorical: error refuses categorical columns; onehot refuses too many values."""
    cols = [] if feats.categorical is None else [str(c) for c in feats.categorical.columns]
    if cols and cfg.categorical == "error":
        raise DataError(
            f"data file {shown!r}: non-numeric feature columns {_short(cols)}; set "
            "data.categorical: auto or onehot to encode them, or leave them out (data.drop)"
        )
    if cfg.categorical == "onehot" and feats.categorical is not None:
        for c in cols:
            distinct = int(feats.categorical[c].nunique())
            if distinct > MAX_CATEGORIES:
                raise DataError(
                    f"data file {shown!r}: categorical column {quote(c)} has {distinct} distinct "
                    f"values, too many to one-hot encode (more than {MAX_CATEGORIES}); set "
                    "data.categorical: auto to frequency-encode it, or drop it"
                )


def dataset_from_frame(frame: pd.DataFrame, cfg: DataConfig, name: str, digest: str,
                       task: str = "auto") -> Dataset:
    """A table's rows as a :class:`Dataset`, once its columns pass the checks; a
    regression's ``y`` is float64 and its ``class_names`` empty (``task`` auto: see
    :func:`resolve_task`)."""
    assert cfg.target is not None
    frame = frame.rename(columns=str)
    labels, keep, task = target_labels(frame, cfg.target, name, task)
    check_column_names(frame, cfg, name)
    feats = build_features(frame, cfg, name, keep)
    if not feats.names and feats.categorical is None:
        raise no_usable_features(feats.report, name)
    _check_categorical(feats, cfg, name)
    served = {"inputs": feats.inputs,
              "example": frame[[c.name for c in feats.inputs]].head(5).reset_index(drop=True),
              "row_ids": np.flatnonzero(keep) if keep is not None else np.arange(len(frame))}
    if task == "regression":
        by_column = {r["column"]: r for r in feats.report}
        by_column[cfg.target] = regression_row(cfg.target, labels, len(frame))
        return Dataset(
            feats.x, labels.to_numpy(dtype=np.float64), feats.names, [], name, digest,
            categorical=feats.categorical, sources=feats.sources,
            columns_report=[by_column[str(c)] for c in frame.columns],
            row_counts={"read": len(frame), "dropped_missing_target": len(frame) - len(labels)},
            **served,
        )
    classes = class_order(labels)
    index = {c: i for i, c in enumerate(classes)}
    y = labels.map(index).to_numpy(dtype=np.int64)
    by_column = {r["column"]: r for r in feats.report}
    by_column[cfg.target] = target_row(cfg.target, labels, len(frame), len(classes))
    return Dataset(
        feats.x, y, feats.names, [str(c) for c in classes], name, digest,
        categorical=feats.categorical, sources=feats.sources,
        columns_report=[by_column[str(c)] for c in frame.columns],
        row_counts={"read": len(frame), "dropped_missing_target": len(frame) - len(labels)},
        class_values=[c.item() if isinstance(c, np.generic) else c for c in classes], **served,
    )


def _apply_image_shape(ds: Dataset, shape: list[int]) -> None:
    """Declare the features an image (data.image_shape); the pixel count must match."""
    c, h, w = shape
    if ds.categorical is not None:
        raise DataError(
            f"config: data.image_shape: {data_label(ds)} has categorical columns "
            f"{', '.join(ds.categorical_columns[:3])}; image data is numeric pixels only"
        )
    if c * h * w != ds.x.shape[1]:
        raise DataError(
            f"config: data.image_shape: {c}x{h}x{w} = {c * h * w} pixels, but {data_label(ds)} has "
            f"{ds.x.shape[1]} feature columns; the product must equal the number of features"
        )
    ds.image_shape = (c, h, w)


def _subsample(ds: Dataset, max_rows: int) -> None:
    """Keep a stratified ``max_rows`` of the rows (data.max_rows; a regression's: a random
    one), in their original order."""
    from sklearn.model_selection import train_test_split  # imported late: slow, and not for errors

    stratify = None if dataset_task(ds) == "regression" else ds.y
    try:
        keep, _ = train_test_split(
            np.arange(len(ds.y)), train_size=max_rows, stratify=stratify, random_state=0
        )
    except ValueError as err:
        raise DataError(
            f"config: data.max_rows: a stratified subsample of {max_rows} rows of data "
            f"{ds.name!r} is impossible ({err}); raise max_rows"
        ) from None
    keep = np.sort(keep)
    ds.row_counts["dropped_by_max_rows"] = len(ds.y) - len(keep)
    ds.x, ds.y = ds.x[keep], ds.y[keep]
    if ds.row_ids is not None:
        ds.row_ids = ds.row_ids[keep]
    if ds.categorical is not None:
        ds.categorical = ds.categorical.iloc[keep].reset_index(drop=True)


def _load_diabetes() -> Dataset:
    """scikit-learn's bundled diabetes data (442 rows, 10 features, a disease-progression score
    25..346 a year on): the built-in regression set, no download."""
    from sklearn import datasets

    bunch = datasets.load_diabetes()
    x = np.asarray(bunch.data, dtype=np.float32)
    y = np.asarray(bunch.target, dtype=np.float64)
    digest = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()
    return with_numeric_inputs(
        Dataset(x, y, [str(f) for f in bunch.feature_names], [], "diabetes", digest))


def load_dataset(cfg: DataConfig, task: str = "auto") -> Dataset:
    """Load the configured data set and check it can be split and trained on; ``task`` (the
    config's, auto by default) decides what a file's target is (:func:`resolve_task`)."""
    if cfg.dataset in REGRESSION_DATASETS:
        ds = _load_diabetes()
        n = len(ds.y)
        ds.columns_report = [*numeric_report(ds.x, ds.feature_names),
                             regression_row("target", pd.Series(ds.y), n)]
        ds.row_counts = {"read": n, "dropped_missing_target": 0}
    elif cfg.dataset is not None:
        ds = load_builtin(cfg.dataset)
        n = len(ds.y)
        ds.columns_report = [*numeric_report(ds.x, ds.feature_names),
                             target_row("target", pd.Series(ds.y), n, len(ds.class_names))]
        ds.row_counts = {"read": n, "dropped_missing_target": 0}
    else:
        assert cfg.path is not None and cfg.target is not None  # the config validated this
        path = Path(cfg.path)
        # float columns come as float32, but the target and the columns data.columns sets
        frame = read_table(path, exact={cfg.target, *cfg.columns})
        ds = dataset_from_frame(frame, cfg, str(path), file_digest(path), task)
        del frame  # the features are in ds now; the frame's memory can go
    if cfg.image_shape is not None:
        _apply_image_shape(ds, cfg.image_shape)
    check_dataset(ds)  # before subsampling too: a stratified subsample needs the same guarantees
    if cfg.max_rows is not None and len(ds.y) > cfg.max_rows:
        _subsample(ds, cfg.max_rows)
    check_dataset(ds)
    return ds
