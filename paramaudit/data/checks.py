"""From the config to a checked :class:`Dataset`, and every check of the data against the config.

All of it runs before any server or search starts (:func:`check_inputs`, the CLI's preflight),
and every problem a user can cause is a one-line :class:`DataError` or :class:`ConfigError`
that names the file, column or config field.

What a table must be:

- the target: rows without a value are dropped and counted (``row_counts``), and what is left
  holds at most ``MAX_CLASSES`` classes of at least ``MIN_PER_CLASS`` rows each; class names
  are the file's own values (strings, yes/no, booleans, integers). Or, with ``task: regression``
  (or ``auto`` on a float target or a many-valued integer one: :func:`resolve_task`), a numeric
  target read as float64, not constant;
- the feature columns: each is numeric, categorical, a date or dropped (an identifier, a
  constant, all missing, free text), inferred or set by ``data.columns``
  (:mod:`paramaudit.data.columns`); at least one must be left. With ``data.categorical: error``
  categorical columns are refused; with ``onehot`` one of more than ``MAX_CATEGORIES`` values is.
"""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from paramaudit.config import (
    CLASSIFICATION_METRICS,
    REGRESSION_DATASETS,
    REGRESSION_METRICS,
    DataConfig,
    PipelineConfig,
    quote,
)
from paramaudit.data.choices import check_preprocessing
from paramaudit.data.columns import (
    MISSING_CATEGORY,
    Features,
    build_features,
    check_column_names,
    missing_to_na,
    no_usable_features,
    numeric_report,
    target_row,
)
from paramaudit.data.preprocess import (
    Splits,
    dataset_task,
    split_and_scale,
    split_indices,
)
from paramaudit.data.read import (
    MAX_COLUMN_NAME,
    Dataset,
    data_label,
    file_digest,
    load_builtin,
    read_table,
    with_numeric_inputs,
)
from paramaudit.errors import ConfigError, DataError

__all__ = ["MAX_CATEGORIES", "MAX_CLASSES", "MIN_PER_CLASS", "MIN_REGRESSION_ROWS", "MISSING_CATEGORY",
           "check_dataset", "check_inputs", "check_preprocessing", "check_split",
           "dataset_from_frame", "load_and_split", "load_dataset", "resolve_task"]

MIN_PER_CLASS = 3  # one sample each for train, val and test under a stratified split
MAX_CLASSES = 100  # more distinct target values than this is not a set of classes
MAX_CATEGORIES = 200  # data.categorical: onehot encodes at most this many values of a column
# task: auto reads integers as a regression target above this many distinct values, when they
# are also more than REGRESSION_SHARE of the rows (ages 18..90 in 1,000 rows: regression; 50
# classes in 100,000 rows: classification); more than MAX_CLASSES is a regression whatever the
# rows. A float target with a non-integer value is a regression.
REGRESSION_DISTINCT = 20
REGRESSION_SHARE = 0.05
MIN_REGRESSION_ROWS = 10  # a regression's three splits, each with 2+ rows, and some to learn on


# --------------------------------------------------------------------------- a table's columns


def _short(names: list[str], limit: int = 5) -> str:
    shown = [n if len(n) <= 40 else f"{n[:40]}..." for n in names[:limit]]
    return ", ".join(shown) + (" ..." if len(names) > limit else "")


def resolve_task(labels: pd.Series, task: str = "auto") -> str:
    """``task: auto``'s choice for these target values (present ones only), or ``task`` as it is.

    Regression for a numeric (not boolean) target with a non-integer value, or integers with
    more than REGRESSION_DISTINCT distinct values that are also more than REGRESSION_SHARE of
    the rows (or more than MAX_CLASSES); classification for text, booleans and few integers.
    """
    if task != "auto":
        return task
    if pd.api.types.is_bool_dtype(labels) or not pd.api.types.is_numeric_dtype(labels):
        return "classification"
    present = labels.dropna()
    if pd.api.types.is_float_dtype(present) and not bool((present == present.round()).all()):
        return "regression"
    distinct = int(present.nunique())
    many = distinct > REGRESSION_DISTINCT and distinct > REGRESSION_SHARE * len(present)
    return "regression" if many or distinct > MAX_CLASSES else "classification"


def _present(frame: pd.DataFrame, target: str, shown: str) -> tuple[pd.Series, np.ndarray | None]:
    """The target's values on the rows that have one (and which rows those are: None for all),
    once the column is there."""
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
    missing = missing_to_na(labels)[0].isna().to_numpy()
    if missing.all():
        raise DataError(f"data file {shown!r}: target column {quote(target)} is all missing")
    keep = ~missing if missing.any() else None
    if keep is not None:
        labels = labels[keep]
    return labels.reset_index(drop=True), keep


def _regression_target(labels: pd.Series, target: str, shown: str) -> pd.Series:
    """A regression target as float64: numbers only, not all the same."""
    if pd.api.types.is_bool_dtype(labels) or not pd.api.types.is_numeric_dtype(labels):
        kind = "true/false" if pd.api.types.is_bool_dtype(labels) else "text"
        raise DataError(
            f"data file {shown!r}: task: regression needs a numeric target, but target column "
            f"{quote(target)} is {kind}; set task: classification (or auto), or name a numeric "
            "column")
    y = labels.astype(np.float64)
    if not np.isfinite(y.to_numpy()).all():
        raise DataError(f"data file {shown!r}: target column {quote(target)} has infinite values")
    if len(y) < MIN_REGRESSION_ROWS:
        raise DataError(f"data file {shown!r}: {len(y)} rows with a target; a regression needs "
                        f"at least {MIN_REGRESSION_ROWS}")
    if y.nunique() < 2:
        raise DataError(f"data file {shown!r}: target column {quote(target)} is constant; "
                        "nothing to regress")
    return y


def _labels(frame: pd.DataFrame, target: str, shown: str, task: str = "auto",
            ) -> tuple[pd.Series, np.ndarray | None, str]:
    """The target's values on the rows that have one, which rows those are (None: all), and
    the task (``task: auto`` resolved): a plausible set of classes, or a numeric target."""
    labels, keep = _present(frame, target, shown)
    task = resolve_task(labels, task)
    if task == "regression":
        return _regression_target(labels, target, shown), keep, task
    present = labels.dropna()
    if pd.api.types.is_float_dtype(labels) and bool((present == present.round()).all()):
        labels = labels.astype(np.int64)  # integers pandas read as floats: 1, not 1.0
    n_classes, n_rows = int(labels.nunique()), len(labels)
    if n_classes < 2:  # before the features' work, and whatever becomes of them
        raise DataError(f"data file {shown!r}: the target has one class; need at least two")
    if n_classes > MAX_CLASSES or (n_classes > n_rows / 2 and n_classes > 2):
        raise DataError(
            f"data file {shown!r}: target column {target!r} has {n_classes} distinct values in "
            f"{n_rows} rows, too many to be classes (at most {MAX_CLASSES}, {MIN_PER_CLASS}+ rows "
            "each; a continuous value or an identifier?); set task: regression for a numeric "
            "target, bin it into classes or name the label column"
        )
    return labels, keep, task


def _class_order(labels: pd.Series) -> list[Any]:
    """Numbers (also written as text) in numeric order (0, 1, 2, ..., 10), the rest as text."""
    uniques = labels.unique().tolist()
    if pd.api.types.is_numeric_dtype(labels) or pd.api.types.is_bool_dtype(labels):
        return sorted(uniques)
    as_numbers = pd.to_numeric(pd.Series(uniques, dtype=object), errors="coerce")
    if as_numbers.notna().all():
        return [u for _, u in sorted(zip(as_numbers.tolist(), uniques, strict=True),
                                     key=lambda p: (p[0], str(p[1])))]
    return sorted(uniques, key=str)


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


def _regression_row(name: str, y: pd.Series, n_read: int) -> dict[str, Any]:
    """The columns report's row of a regression target."""
    row = target_row(name, y, n_read, 0)
    missing = n_read - len(y)
    row.update(distinct=int(y.nunique()),
               action=f"target (regression: mean {y.mean():.4g}, std {y.std(ddof=0):.4g})"
               + (f"; {missing:,} rows without one dropped" if missing else ""))
    return row


def dataset_from_frame(frame: pd.DataFrame, cfg: DataConfig, name: str, digest: str,
                       task: str = "auto") -> Dataset:
    """A table's rows as a :class:`Dataset`, once its columns pass the checks above; a
    regression's ``y`` is float64 and its ``class_names`` empty (``task`` auto: see
    :func:`resolve_task`)."""
    assert cfg.target is not None
    frame = frame.rename(columns=str)
    labels, keep, task = _labels(frame, cfg.target, name, task)
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
        by_column[cfg.target] = _regression_row(cfg.target, labels, len(frame))
        return Dataset(
            feats.x, labels.to_numpy(dtype=np.float64), feats.names, [], name, digest,
            categorical=feats.categorical, sources=feats.sources,
            columns_report=[by_column[str(c)] for c in frame.columns],
            row_counts={"read": len(frame), "dropped_missing_target": len(frame) - len(labels)},
            **served,
        )
    classes = _class_order(labels)
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


# --------------------------------------------------------------------------- the loaded data set


def check_dataset(ds: Dataset) -> None:
    """Refuse data a stratified three-way split or a classifier cannot use (a regression: too
    few rows, or a constant target)."""
    if dataset_task(ds) == "regression":
        if len(ds.y) < MIN_REGRESSION_ROWS:
            raise DataError(f"{data_label(ds)}: {len(ds.y)} rows; a regression needs at least "
                            f"{MIN_REGRESSION_ROWS}")
        if float(np.ptp(ds.y)) == 0.0:
            raise DataError(f"{data_label(ds)}: the target is constant; nothing to regress")
        return
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
                             _regression_row("target", pd.Series(ds.y), n)]
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


# --------------------------------------------------------------------------- against the config


def check_split(cfg: PipelineConfig, ds: Dataset) -> None:
    """The train/val/test split works, and k-fold (search.cv_folds) has rows for every fold."""
    idx_train, idx_val, _ = split_indices(ds, cfg.data, cfg.seed)
    folds = cfg.search.cv_folds
    if folds is None:
        return
    rest = np.concatenate([idx_train, idx_val])
    if len(rest) < folds or (dataset_task(ds) == "regression" and len(rest) < 2 * folds):
        raise ConfigError(
            f"config: search.cv_folds: {folds} folds, but {data_label(ds)} has only {len(rest)} rows "
            "outside the test split; lower cv_folds or add rows"
        )
    if dataset_task(ds) == "regression":
        return  # KFold, not stratified: the rows are enough
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
    ds = load_dataset(cfg.data, cfg.task)
    check_task_metric(cfg, ds)
    check_split(cfg, ds)
    check_preprocessing(cfg, ds)
    return ds


def check_task_metric(cfg: PipelineConfig, ds: Dataset) -> None:
    """search.metric must be one this data's task reports (task: auto is only known now; an
    explicit task the config checked already)."""
    task = dataset_task(ds)
    wrong = REGRESSION_METRICS if task == "classification" else CLASSIFICATION_METRICS
    if cfg.search.metric in wrong:
        fits = ("val_loss, val_rmse, val_mae or val_r2" if task == "regression" else
                "val_loss, val_accuracy, val_balanced_accuracy, val_f1_macro, val_roc_auc or "
                "val_log_loss")
        how = f"task {cfg.task}" if cfg.task != "auto" else f"task auto chose {task}"
        raise ConfigError(
            f"config: search.metric: {cfg.search.metric} is not a {task} metric, but "
            f"{data_label(ds)} is a {task} ({how}); use {fits}")


def load_and_split(cfg: PipelineConfig) -> Splits:
    """Step 1 of the pipeline: every check of :func:`check_inputs`, then the split and the
    preprocessing; the splits carry the columns report and the row counts."""
    ds = check_inputs(cfg)
    return split_and_scale(ds, cfg.data, cfg.preprocess, cfg.seed)
