"""Every check of the data against the config, before any server or search starts.

:func:`check_inputs` is the CLI's preflight and the start of :func:`load_and_split`, step 1 of
the pipeline. Every problem a user can cause is a one-line :class:`DataError` or
:class:`ConfigError` that names the file, column or config field. What a table must be is
checked as it loads (:mod:`paramaudit.data.load`: the target by :mod:`paramaudit.data.target`,
the feature columns by :mod:`paramaudit.data.features`); then the task's metric, the split and
k-fold here, and the preprocessing and model choices (:mod:`paramaudit.data.choices`).

The names below are importable from here as before the split into those modules.
"""

from __future__ import annotations

import numpy as np

from paramaudit.config import CLASSIFICATION_METRICS, REGRESSION_METRICS, PipelineConfig
from paramaudit.data.choices import check_preprocessing
from paramaudit.data.columns import MISSING_CATEGORY
from paramaudit.data.load import MAX_CATEGORIES, dataset_from_frame, load_dataset
from paramaudit.data.preprocess import Splits, dataset_task, split_and_scale, split_indices
from paramaudit.data.read import Dataset, data_label
from paramaudit.data.target import (
    MAX_CLASSES,
    MIN_PER_CLASS,
    MIN_REGRESSION_ROWS,
    check_dataset,
    resolve_task,
)
from paramaudit.errors import ConfigError

# the loading and target names stay importable from here (tests and callers import them so)
__all__ = ["MAX_CATEGORIES", "MAX_CLASSES", "MIN_PER_CLASS", "MIN_REGRESSION_ROWS", "MISSING_CATEGORY",
           "check_dataset", "check_inputs", "check_preprocessing", "check_split",
           "dataset_from_frame", "load_and_split", "load_dataset", "resolve_task"]


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


def load_and_split(cfg: PipelineConfig) -> Splits:
    """Step 1 of the pipeline: every check of :func:`check_inputs`, then the split and the
    preprocessing; the splits carry the columns report and the row counts."""
    ds = check_inputs(cfg)
    return split_and_scale(ds, cfg.data, cfg.preprocess, cfg.seed)
