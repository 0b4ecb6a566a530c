"""From the config to a checked :class:`Dataset`, and every check of the data against the config.

All of it runs before any server or search starts (:func:`check_inputs`, the CLI's preflight),
and every problem a user can cause is a one-line :class:`DataError` or :class:`ConfigError`
that names the file, column or config field.

What a table's columns must be:

- the target holds at most ``MAX_CLASSES`` classes of at least ``MIN_PER_CLASS`` rows each
  (more distinct values is a regression target or an identifier);
- a feature column is categorical when pandas does not read it as numbers (text, booleans,
  dates); such columns are refused unless ``data.categorical: onehot``;
- a missing categorical value (empty cell, NaN) is a category of its own, ``"(missing)"``;
- a column with more than ``MAX_CATEGORIES`` distinct values is refused (an identifier or free
  text, not a category), and so is a column that is numbers except for a few placeholders such
  as ``?`` (a numeric column with a typo, in either mode).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from paramaudit.config import DataConfig, PipelineConfig, PreprocessConfig, declared_hyperparameters, quote
from paramaudit.data.preprocess import Splits, fit_encoding, split_and_scale, split_indices
from paramaudit.data.read import (
    MAX_COLUMN_NAME,
    Dataset,
    data_label,
    file_digest,
    load_builtin,
    read_table,
)
from paramaudit.errors import ConfigError, DataError

MIN_PER_CLASS = 3  # one sample each for train, val and test under a stratified split
MAX_CLASSES = 100  # more distinct target values than this is a regression target or an id
MAX_CATEGORIES = 200  # more distinct values in one categorical column is an id or free text
MISSING_CATEGORY = "(missing)"


# --------------------------------------------------------------------------- a table's columns


def _labels(frame: pd.DataFrame, target: str, shown: str) -> pd.Series:
    """The target column, once it is there, complete and a plausible set of classes."""
    if frame.shape[0] == 0:
        raise DataError(f"data file {shown!r}: a header but no rows")
    if target not in frame.columns:
        hint = difflib.get_close_matches(target, [str(c) for c in frame.columns], n=1
                                         ) if len(target) <= MAX_COLUMN_NAME else []
        extra = f" (did you mean {quote(hint[0])}?)" if hint else ""
        raise DataError(f"data file {shown!r}: target column {quote(target)} not found{extra}")
    if frame.shape[1] < 2:
        raise DataError(f"data file {shown!r}: no feature columns besides the target {target!r}")
    labels = frame[target]
    if labels.isna().any():
        raise DataError(
            f"data file {shown!r}: target column {target!r} has {int(labels.isna().sum())} "
            "missing values"
        )
    n_classes, n_rows = len(labels.unique()), len(labels)
    if n_classes > MAX_CLASSES or (n_classes > n_rows / 2 and n_classes > 2):
        raise DataError(
            f"data file {shown!r}: target column {target!r} has {n_classes} distinct values in "
            f"{n_rows} rows: a continuous (regression) target or an identifier? paramaudit trains "
            f"classifiers (at most {MAX_CLASSES} classes, {MIN_PER_CLASS}+ rows each); "
            "bin it into classes or name the label column"
        )
    return labels


def _numeric_with_typos(col: pd.Series) -> list[str]:
    """The stray values of a column that is numbers apart from a few placeholders ('?', 'n/a')."""
    present = col.dropna()
    if present.empty or pd.api.types.is_bool_dtype(col):
        return []
    as_numbers = pd.to_numeric(present.astype(str).str.strip(), errors="coerce")
    bad = present[as_numbers.isna()]
    if len(bad) == 0 or len(bad) > 0.1 * len(present):
        return []
    return sorted({str(v) for v in bad.tolist()})


def _non_numeric(features: pd.DataFrame, categorical: str, shown: str) -> list[str]:
    """The categorical feature columns; refused unless one-hot encoding was asked for."""
    non_numeric = [str(c) for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])
                   or pd.api.types.is_bool_dtype(features[c])]
    for c in non_numeric:
        stray = _numeric_with_typos(features[c])
        if stray:
            raise DataError(
                f"data file {shown!r}: feature column {c!r} is numeric except for "
                f"{', '.join(repr(s) for s in stray[:3])}{' ...' if len(stray) > 3 else ''}; "
                "leave missing cells empty or fix those values"
            )
    if non_numeric and categorical != "onehot":
        raise DataError(
            f"data file {shown!r}: non-numeric feature columns {', '.join(non_numeric[:5])}"
            f"{' ...' if len(non_numeric) > 5 else ''}; set data.categorical: onehot to one-hot "
            "encode them, or drop them"
        )
    return non_numeric


def _numeric_matrix(numeric: pd.DataFrame, shown: str) -> np.ndarray:
    """The numeric columns as float64, finite and within float32's range."""
    x = numeric.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        cols = [str(numeric.columns[i]) for i in np.where(bad.any(axis=0))[0]]
        raise DataError(
            f"data file {shown!r}: NaN or infinite values in feature columns {', '.join(cols[:5])}"
        )
    if np.abs(x).max(initial=0.0) > np.finfo(np.float32).max:
        raise DataError(f"data file {shown!r}: feature values overflow float32")
    return x


def _categorical_frame(features: pd.DataFrame, columns: list[str], shown: str) -> pd.DataFrame:
    """The categorical columns as strings, a missing value as ``MISSING_CATEGORY``."""
    out = {}
    for c in columns:
        col = features[c]
        values = [MISSING_CATEGORY if pd.isna(v) else str(v) for v in col.astype(object).tolist()]
        distinct = len(set(values))
        if distinct > MAX_CATEGORIES:
            raise DataError(
                f"data file {shown!r}: categorical column {c!r} has {distinct} distinct values "
                f"(more than {MAX_CATEGORIES}): an identifier or free text, not a category; drop it"
            )
        out[c] = values
    return pd.DataFrame(out, columns=columns)


def dataset_from_frame(frame: pd.DataFrame, target: str, name: str, digest: str,
                       categorical: str = "error") -> Dataset:
    """A table's rows as a :class:`Dataset`, once its columns pass the checks above."""
    frame = frame.rename(columns=str)
    labels = _labels(frame, target, name)
    features = frame.drop(columns=[target])
    non_numeric = _non_numeric(features, categorical, name)
    numeric = features.drop(columns=non_numeric)
    x = _numeric_matrix(numeric, name)
    cats = _categorical_frame(features, non_numeric, name) if non_numeric else None
    # numeric labels keep their numeric order (0, 1, 2, ..., 10), others sort as text
    uniques = labels.unique().tolist()
    classes = sorted(uniques) if pd.api.types.is_numeric_dtype(labels) else sorted(uniques, key=str)
    index = {c: i for i, c in enumerate(classes)}
    y = labels.map(index).to_numpy(dtype=np.int64)
    return Dataset(
        x.astype(np.float32), y, [str(c) for c in numeric.columns], [str(c) for c in classes],
        name, digest, categorical=cats,
    )


# --------------------------------------------------------------------------- the loaded data set


def check_dataset(ds: Dataset) -> None:
    """Refuse data a stratified three-way split or a classifier cannot use."""
    counts = np.bincount(ds.y, minlength=len(ds.class_names))
    present = int((counts > 0).sum())
    if present < 2:
        raise DataError(f"{data_label(ds)}: the target has one class; need at least two")
    small = [ds.class_names[i] for i, n in enumerate(counts) if 0 < n < MIN_PER_CLASS]
    if small:
        raise DataError(
            f"{data_label(ds)}: class {small[0]!r} has {int(counts[ds.class_names.index(small[0])])}"
            f" sample(s); a stratified train/val/test split needs at least {MIN_PER_CLASS} per class"
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
    """Keep a stratified ``max_rows`` of the rows (data.max_rows), in their original order."""
    from sklearn.model_selection import train_test_split  # imported late: slow, and not for errors

    try:
        keep, _ = train_test_split(
            np.arange(len(ds.y)), train_size=max_rows, stratify=ds.y, random_state=0
        )
    except ValueError as err:
        raise DataError(
            f"config: data.max_rows: a stratified subsample of {max_rows} rows of data "
            f"{ds.name!r} is impossible ({err}); raise max_rows"
        ) from None
    keep = np.sort(keep)
    ds.x, ds.y = ds.x[keep], ds.y[keep]
    if ds.categorical is not None:
        ds.categorical = ds.categorical.iloc[keep].reset_index(drop=True)


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load the configured data set and check it can be split and trained on."""
    if cfg.dataset is not None:
        ds = load_builtin(cfg.dataset)
    else:
        assert cfg.path is not None and cfg.target is not None  # the config validated this
        path = Path(cfg.path)
        frame = read_table(path)
        ds = dataset_from_frame(frame, cfg.target, str(path), file_digest(path), cfg.categorical)
    if cfg.image_shape is not None:
        _apply_image_shape(ds, cfg.image_shape)
    check_dataset(ds)  # before subsampling too: a stratified subsample needs the same guarantees
    if cfg.max_rows is not None and len(ds.y) > cfg.max_rows:
        _subsample(ds, cfg.max_rows)
    check_dataset(ds)
    return ds


# --------------------------------------------------------------------------- against the config


def _choices(value: Any) -> list[Any]:
    """Every value a searched field (``{choice: [...]}``) can take; a fixed one alone."""
    return list(value["choice"]) if isinstance(value, dict) else [value]


def _check_preprocess_choices(pre: PreprocessConfig, ds: Dataset, n_features: int,
                              n_train: int | None = None, encoded: int = 0) -> None:
    """Every choice of preprocess.* must work on this data (each is tried by some trial)."""
    after = f" ({encoded} of them from one-hot encoding)" if encoded else ""
    for k in _choices(pre.pca_components):
        if isinstance(k, int) and not isinstance(k, bool):
            if k > n_features:
                raise ConfigError(
                    f"config: preprocess.pca_components: {k} components, but {data_label(ds)} has "
                    f"{n_features} feature columns{after}; ask for at most {n_features} or a "
                    "variance fraction such as 0.95"
                )
            if n_train is not None and k > n_train:
                raise ConfigError(
                    f"config: preprocess.pca_components: {k} components, but the train split of "
                    f"{data_label(ds)} has {n_train} rows; ask for at most {n_train}"
                )
    if any(_choices(pre.augment)) and ds.image_shape is None:
        raise ConfigError(
            f"config: preprocess.augment: augmentation needs image data, but {data_label(ds)} is "
            "tabular; declare data.image_shape: [channels, height, width] or set augment: false"
        )
    if any(_choices(pre.augment)) and any(k is not None for k in _choices(pre.pca_components)):
        raise ConfigError(
            "config: preprocess.augment: augmentation shifts and rotates images, and PCA turns "
            "them into components first; search one or the other"
        )


def _kernel_sizes(space: dict[str, Any]) -> list[int]:
    """Every kernel size the search can try (a randint's largest is its upper bound - 1)."""
    value = space.get("kernel_size", declared_hyperparameters()["kernel_size"].default)
    if isinstance(value, dict):
        kind, args = next(iter(value.items()))
        return [args[1] - 1] if kind == "randint" else [int(v) for v in args]
    return [int(value)]


def _check_cnn(cfg: PipelineConfig, ds: Dataset) -> None:
    """A CNN needs image data, unflattened by PCA, with kernels that fit the image."""
    if ds.image_shape is None:
        raise ConfigError(
            f"config: model: cnn needs image data, but {data_label(ds)} is tabular; use mlp "
            "or declare data.image_shape: [channels, height, width]"
        )
    if any(k is not None for k in _choices(cfg.preprocess.pca_components)):
        raise ConfigError(
            "config: preprocess.pca_components: PCA flattens the image, but model cnn needs "
            "(channels, height, width) inputs; drop PCA or use mlp"
        )
    side = min(ds.image_shape[1:])
    big = [k for k in _kernel_sizes(cfg.search.space) if k > side]
    if big:
        raise ConfigError(
            f"config: search.space.kernel_size: {max(big)} is larger than the "
            f"{ds.image_shape[1]}x{ds.image_shape[2]} images of {data_label(ds)}; "
            f"use kernels of at most {side}"
        )


def check_preprocessing(cfg: PipelineConfig, ds: Dataset) -> None:
    """Preprocessing and model choices that cannot work on this data: a one-line ConfigError.

    pca_components above the number of features (after one-hot) or train rows, augmentation or
    a CNN on non-image data, PCA before a CNN, a CNN kernel larger than the image.
    """
    idx_train, _, _ = split_indices(ds, cfg.data, cfg.seed)
    enc = fit_encoding(ds, idx_train)
    encoded = enc.n_out if enc else 0
    n_features = ds.x.shape[1] + encoded
    _check_preprocess_choices(cfg.preprocess, ds, n_features, len(idx_train), encoded)
    if "cnn" in cfg.model_choices():
        _check_cnn(cfg, ds)


def check_split(cfg: PipelineConfig, ds: Dataset) -> None:
    """The train/val/test split works, and k-fold (search.cv_folds) has rows for every fold."""
    idx_train, idx_val, _ = split_indices(ds, cfg.data, cfg.seed)
    folds = cfg.search.cv_folds
    if folds is None:
        return
    rest = np.concatenate([idx_train, idx_val])
    if len(rest) < folds:
        raise ConfigError(
            f"config: search.cv_folds: {folds} folds, but {data_label(ds)} has only {len(rest)} rows "
            "outside the test split; lower cv_folds or add rows"
        )
    counts = np.bincount(ds.y[rest], minlength=len(ds.class_names))
    worst = int(np.argmin(counts))
    if counts[worst] < folds:
        raise ConfigError(
            f"config: search.cv_folds: {folds} stratified folds need {folds}+ rows of every class "
            f"outside the test split, but class {ds.class_names[worst]!r} of {data_label(ds)} has "
            f"{int(counts[worst])}; lower cv_folds or add rows"
        )


def check_inputs(cfg: PipelineConfig) -> Dataset:
    """Everything about the data a run can get wrong, before any server or search starts.

    Load and validate the data (:func:`load_dataset`), then the split and k-fold
    (:func:`check_split`), then the preprocessing and model choices (:func:`check_preprocessing`).
    Raises a one-line DataError or ConfigError; returns the loaded data set.
    """
    ds = load_dataset(cfg.data)
    check_split(cfg, ds)
    check_preprocessing(cfg, ds)
    return ds


def load_and_split(cfg: PipelineConfig) -> Splits:
    """Step 1 of the pipeline: every check of :func:`check_inputs`, then the split and scaling."""
    ds = check_inputs(cfg)
    return split_and_scale(ds, cfg.data, cfg.preprocess, cfg.seed)
