"""Splitting and preprocessing, fitted on the train split only (no leakage).

A stratified train/val/test split (:func:`split_indices`; a regression's is not stratified),
then the encoding of categorical
columns (:mod:`paramaudit.data.encode`), then the :class:`Preprocessor`: imputation of missing
values, the scaler and the optional PCA, each fitted on the train rows and applied unchanged to
val and test (:func:`split_and_scale`). A search that tries other preprocessing refits it on the
same rows (:func:`refit_preprocessing`).

Missing values (``preprocess.impute``, searchable like the scaler): the numeric columns with
gaps in any split are imputed (with statistics of the train rows: which columns have gaps is
all val and test tell), and each raw column with gaps in the train split gets a 0/1 column
``COL (missing)`` (one for all the parts of a date; none for image data, whose shape is fixed).
Which columns those are is decided once, here, so every trial and fold that refits the
preprocessing (:meth:`Splits.missing_columns`) gives the model the same inputs. Data without
gaps goes through unchanged: a built-in set's features are what they were before imputation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from paramaudit.config import DataConfig, PreprocessConfig
from paramaudit.data.columns_report import finish_report
from paramaudit.data.encode import Encoding, OneHot, fit_categorical, fit_onehot
from paramaudit.data.inputs import InputColumn
from paramaudit.data.preprocessor import (
    IMPUTE_STRATEGIES,
    Preprocessor,
    Scaler,
    fit_preprocessor,
    fit_scaler,
    gap_columns,
)
from paramaudit.data.read import Dataset, data_label
from paramaudit.errors import DataError
from paramaudit.metrics import TargetScaler

__all__ = ["IMPUTE_STRATEGIES", "OneHot", "Preprocessor", "Scaler", "Splits", "fit_onehot",
           "fit_preprocessor", "fit_scaler", "refit_preprocessing", "split_and_scale",
           "split_indices"]


# --------------------------------------------------------------------------- the split


@dataclass
class Splits:
    """Preprocessed train/val/test arrays plus what the model and the report need to know.

    ``raw_train``/``raw_val``/``raw_test`` are the rows before imputation, scaling and PCA
    (after the categorical encoding; NaN where a value is missing), so a search can refit
    preprocessing per trial or per fold (:func:`refit_preprocessing`); ``feature_names`` name
    their columns and ``feature_sources`` the raw column of each. ``input_names()`` names the
    model's inputs. ``columns_report`` has one row per raw column of the file (kind, missing
    share, distinct values, what became of it and why; see
    :func:`~paramaudit.data.columns_report.columns_report_markdown`), ``row_counts`` the rows read,
    dropped and in each split. ``task`` is classification or regression; a regression's ``y_*``
    are float targets in their original units, ``class_names`` is empty and ``target_scaler``
    (fitted on ``y_train``) is how training standardises the target.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    feature_names: list[str]
    class_names: list[str]
    name: str
    content_hash: str
    scaler: Scaler
    input_shape: tuple[int, ...] = field(default=())
    # unscaled train and val rows: k-fold refits the scaler on each fold's training part
    raw_train: np.ndarray | None = None
    raw_val: np.ndarray | None = None
    raw_test: np.ndarray | None = None
    preprocessor: Preprocessor | None = None
    encoding: dict[str, Any] = field(
        default_factory=lambda: {"categorical_columns": [], "encoded_columns": 0})
    image_shape: tuple[int, ...] | None = None  # the data's own layout, before any PCA
    feature_sources: list[str] = field(default_factory=list)
    columns_report: list[dict[str, Any]] = field(default_factory=list)
    row_counts: dict[str, int] = field(default_factory=dict)
    task: str = "classification"
    target_scaler: TargetScaler | None = None
    # what the served model needs to read raw rows (paramaudit.serving): the raw inputs, the
    # fitted categorical encoding, a few raw rows, the classes as the target's own values
    inputs: list[InputColumn] = field(default_factory=list)
    encoder: Encoding | None = None
    example_rows: pd.DataFrame | None = None
    class_values: list[Any] = field(default_factory=list)
    test_row_ids: np.ndarray | None = None  # the test rows' positions in the data file

    @property
    def n_classes(self) -> int:
        """Number of classes (0 for a regression)."""
        return len(self.class_names)

    @property
    def n_outputs(self) -> int:
        """The model's output units: one per class, or 1 for a regression."""
        return 1 if self.task == "regression" else self.n_classes

    @property
    def n_features(self) -> int:
        """Number of input features after preprocessing."""
        return int(self.x_train.shape[1])

    def sizes(self) -> dict[str, int]:
        """Rows per split."""
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}

    def missing_columns(self) -> dict[str, tuple[int, ...]]:
        """The raw columns imputed and given an indicator: pass to :func:`fit_preprocessor`
        (``**splits.missing_columns()``) so a trial or fold refits on the same columns."""
        prep = self.preprocessor
        if prep is None:
            return {"impute_columns": (), "indicator_columns": ()}
        return {"impute_columns": prep.impute_columns, "indicator_columns": prep.indicator_columns}

    def input_names(self) -> list[str]:
        """The model's inputs: the raw columns and ``COL (missing)`` indicators, or the
        principal components (``pc1``, ...) under PCA."""
        prep = self.preprocessor
        if prep is None:
            return list(self.feature_names)
        if prep.components is not None:
            return [f"pc{i + 1}" for i in range(prep.n_out)]
        sources = self.feature_sources or self.feature_names
        return list(self.feature_names) + [f"{sources[j]} (missing)" for j in prep.indicator_columns]


def first_choice(value: Any) -> Any:
    """The fixed value, or the first of ``{choice: [...]}``: the default when not searched."""
    return value["choice"][0] if isinstance(value, dict) else value


def dataset_task(ds: Dataset) -> str:
    """A loaded data set's task: regression when its targets are floats (data.target)."""
    return "regression" if np.asarray(ds.y).dtype.kind == "f" else "classification"


MIN_REGRESSION_SPLIT = 2  # rows in each split of a regression: R² needs two


def split_indices(ds: Dataset, cfg: DataConfig, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of the train, val and test splits, stratified by class (a regression's are
    not: shuffled); too few rows is a DataError."""
    from sklearn.model_selection import train_test_split  # imported late: slow

    n = len(ds.y)
    regression = dataset_task(ds) == "regression"
    # each split needs a row of every class, or a few rows of a regression's target
    least = MIN_REGRESSION_SPLIT if regression else len(ds.class_names)
    n_test = max(least, int(round(cfg.test_size * n)))
    n_val = max(least, int(round(cfg.val_size * n)))
    if n - n_test - n_val < least:
        needs = f"{least}+" if regression else f"{least}+ for {least} classes"
        raise DataError(
            f"{data_label(ds)}: {n} rows are too few for a train/val/test split "
            f"(val {n_val}, test {n_test}, and train needs {needs}); "
            "add rows or lower data.val_size / data.test_size"
        )
    try:
        idx_rest, idx_test = train_test_split(
            np.arange(n), test_size=n_test, stratify=None if regression else ds.y,
            random_state=seed)
        idx_train, idx_val = train_test_split(
            idx_rest, test_size=n_val, stratify=None if regression else ds.y[idx_rest],
            random_state=seed)
    except ValueError as err:
        raise DataError(f"{data_label(ds)}: stratified split impossible ({err})") from None
    return idx_train, idx_val, idx_test


def fit_encoding(ds: Dataset, idx_train: np.ndarray, cfg: DataConfig | None = None
                 ) -> Encoding | None:
    """The encoding of the categorical columns (data.categorical, data.min_category_count) on
    the train rows; None without any."""
    if ds.categorical is None:
        return None
    mode = "auto" if cfg is None or cfg.categorical == "error" else cfg.categorical
    min_count = DataConfig.model_fields["min_category_count"].default if cfg is None \
        else cfg.min_category_count
    return fit_categorical(ds.categorical.iloc[idx_train], mode, min_count)


def missing_columns(ds: Dataset, idx_train: np.ndarray) -> dict[str, tuple[int, ...]]:
    """The numeric columns to impute (gaps in any split: which columns, never their values, is
    all val and test tell) and those that get a missing indicator (gaps in the train split; one
    per raw column, so a date's parts share one; none for image data, whose shape is fixed)."""
    gaps = np.isnan(ds.x).any(axis=0) if ds.x.size else np.zeros(ds.x.shape[1], bool)
    if not gaps.any():
        return {"impute_columns": (), "indicator_columns": ()}
    impute = tuple(int(j) for j in np.flatnonzero(gaps))
    if ds.image_shape is not None:
        return {"impute_columns": impute, "indicator_columns": ()}
    in_train = gap_columns(ds.x[np.ix_(idx_train, np.asarray(impute))])
    sources, seen, indicators = ds.feature_sources, set(), []
    for j in (impute[i] for i in in_train):
        if sources[j] not in seen:
            seen.add(sources[j])
            indicators.append(j)
    return {"impute_columns": impute, "indicator_columns": tuple(indicators)}


def _features(ds: Dataset, idx: np.ndarray, enc: Encoding | None) -> np.ndarray:
    """These rows' numeric columns, then their encoded categorical ones."""
    if enc is None:
        return ds.x[idx]
    assert ds.categorical is not None
    return np.hstack([ds.x[idx], enc.transform(ds.categorical.iloc[idx])]).astype(np.float32)


def _input_shape(image_shape: tuple[int, ...] | None, prep: Preprocessor) -> tuple[int, ...]:
    """The image's shape while PCA has not flattened it, else the number of features."""
    if image_shape is not None and prep.components is None:
        return tuple(image_shape)
    return (prep.n_out,)


def _report(rows: list[dict[str, Any]], sources: list[str], prep: Preprocessor,
            encoding: dict[str, Any]) -> list[dict[str, Any]]:
    """The columns report with what the fitted preprocessing does to each raw column."""
    imputed = {sources[j] for j in prep.impute_columns}
    indicated = {sources[j] for j in prep.indicator_columns}
    return finish_report(rows, prep.impute if prep.imputer is not None else None, imputed,
                         indicated, encoding.get("actions", {}))


def resolve_scaler(kind: str, image_shape: tuple[int, ...] | None) -> str:
    """``auto``: minmax for images (bounded intensities; standardising would blow up the near-
    constant border pixels), standard for tables; any other kind as it is."""
    if kind != "auto":
        return kind
    return "minmax" if image_shape is not None else "standard"


def split_and_scale(ds: Dataset, cfg: DataConfig, pre: PreprocessConfig, seed: int) -> Splits:
    """Train/val/test split, then preprocessing fitted on the train split alone (and a
    regression target's scaler, on the train rows' targets).

    Preprocessing uses the fixed choices of ``pre``; a searched field (``{choice: [...]}``)
    takes its first choice here (the search refits per trial with :func:`refit_preprocessing`).
    """
    idx_train, idx_val, idx_test = split_indices(ds, cfg, seed)
    enc = fit_encoding(ds, idx_train, cfg)
    raw_train, raw_val, raw_test = (_features(ds, i, enc) for i in (idx_train, idx_val, idx_test))
    prep = fit_preprocessor(raw_train, resolve_scaler(first_choice(pre.scaler), ds.image_shape),
                            first_choice(pre.pca_components),
                            seed, impute=first_choice(pre.impute), **missing_columns(ds, idx_train))
    sources = ds.feature_sources + (enc.sources() if enc else [])
    encoding = ({**enc.describe(ds.categorical_columns), "actions": enc.actions} if enc
                else {"categorical_columns": [], "encoded_columns": 0})
    counts = {**ds.row_counts, "train": len(idx_train), "val": len(idx_val), "test": len(idx_test)}
    task = dataset_task(ds)
    return Splits(
        x_train=prep.transform(raw_train),
        y_train=ds.y[idx_train],
        x_val=prep.transform(raw_val),
        y_val=ds.y[idx_val],
        x_test=prep.transform(raw_test),
        y_test=ds.y[idx_test],
        feature_names=list(ds.feature_names) + (enc.names() if enc else []),
        class_names=ds.class_names,
        name=ds.name,
        content_hash=ds.content_hash,
        scaler=prep.scaler,
        input_shape=_input_shape(ds.image_shape, prep),
        raw_train=raw_train,
        raw_val=raw_val,
        raw_test=raw_test,
        preprocessor=prep,
        encoding=encoding,
        image_shape=ds.image_shape,
        feature_sources=sources,
        columns_report=_report(ds.columns_report, sources, prep, encoding),
        row_counts=counts,
        task=task,
        target_scaler=TargetScaler.fit(ds.y[idx_train]) if task == "regression" else None,
        inputs=list(ds.inputs),
        encoder=enc,
        example_rows=ds.example,
        class_values=list(ds.class_values),
        test_row_ids=None if ds.row_ids is None else ds.row_ids[idx_test],
    )


def refit_preprocessing(splits: Splits, scaler: str, pca_components: int | float | None,
                        seed: int = 0, impute: str | None = None) -> Splits:
    """The same rows with preprocessing refitted on ``raw_train`` (a trial's own choice);
    ``impute`` None keeps the splits' imputation strategy."""
    if splits.raw_train is None or splits.raw_val is None or splits.raw_test is None:
        raise ValueError("these splits carry no raw rows to refit preprocessing on")
    old = splits.preprocessor
    strategy = impute or (old.impute if old is not None else "median")
    prep = fit_preprocessor(splits.raw_train, resolve_scaler(scaler, splits.image_shape),
                            pca_components, seed, impute=strategy,
                            **splits.missing_columns())
    return dataclasses.replace(
        splits,
        x_train=prep.transform(splits.raw_train),
        x_val=prep.transform(splits.raw_val),
        x_test=prep.transform(splits.raw_test),
        scaler=prep.scaler,
        preprocessor=prep,
        input_shape=_input_shape(splits.image_shape, prep),
        columns_report=_report(splits.columns_report, splits.feature_sources or splits.feature_names,
                               prep, splits.encoding),
    )
