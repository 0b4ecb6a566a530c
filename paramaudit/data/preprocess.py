"""Splitting and preprocessing, fitted on the train split only (no leakage).

A stratified train/val/test split (:func:`split_indices`), then the one-hot encoding of
categorical columns, the scaler and the optional PCA, each fitted on the train rows and applied
unchanged to val and test (:func:`split_and_scale`). A search that tries other preprocessing
refits it on the same rows (:func:`refit_preprocessing`).

Categorical columns (``data.categorical: onehot``): the categories are the values seen in the
**train** split; a value first seen in val or test encodes as all zeros (no crash); encoded
columns come after the numeric ones, named ``column=value``.

The one-hot encoding is scikit-learn's ``OneHotEncoder``. The scaler and PCA stay hand-written:
scikit-learn's scalers give different numbers (see :class:`Scaler`) while the fitted ones are
pickled in the preprocess step's cached result under unchanged cache keys, and the PCA is an
exact SVD with a fixed sign per component (deterministic across machines).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from paramaudit.config import DataConfig, PreprocessConfig
from paramaudit.data.read import Dataset, data_label
from paramaudit.errors import DataError

if TYPE_CHECKING:
    from sklearn.preprocessing import OneHotEncoder


@dataclass
class Scaler:
    """Per-feature affine map fitted on the training split only.

    Not scikit-learn's scalers: StandardScaler accumulates float32 statistics in float64,
    MinMaxScaler computes ``x * scale + min`` rather than ``(x - shift) / scale``, their
    constant-feature guards differ and there is no "none"; outputs would change (by up to 3e-4
    on digits with StandardScaler) under unchanged cache keys.
    """

    kind: str
    shift: np.ndarray
    scale: np.ndarray

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Apply the fitted shift and scale."""
        return ((x - self.shift) / self.scale).astype(np.float32)


def fit_scaler(x: np.ndarray, kind: str) -> Scaler:
    """Fit a scaler on training rows only, so no statistic leaks from val or test."""
    n = x.shape[1]
    if kind == "none":
        return Scaler(kind, np.zeros(n, np.float32), np.ones(n, np.float32))
    if kind == "standard":
        shift, scale = x.mean(axis=0), x.std(axis=0)
    elif kind == "minmax":
        shift, scale = x.min(axis=0), x.max(axis=0) - x.min(axis=0)
    elif kind == "robust":
        q1, med, q3 = np.percentile(x, [25, 50, 75], axis=0)
        shift, scale = med, q3 - q1
    else:
        raise DataError(f"config: preprocess.scaler: unknown scaler {kind!r}")
    # a constant feature would divide by zero; leave it centred instead
    scale = np.where(scale > 1e-12, scale, 1.0)
    return Scaler(kind, shift.astype(np.float32), scale.astype(np.float32))


@dataclass
class OneHot:
    """One-hot encoding of categorical columns with the categories seen in the train split.

    scikit-learn's ``OneHotEncoder`` encodes: each column's categories sorted, and with
    ``handle_unknown="ignore"`` a category not seen in train encodes as all zeros.
    """

    columns: list[str]
    encoder: OneHotEncoder

    @property
    def categories(self) -> list[list[str]]:
        """Each column's categories, in the order of the encoded columns."""
        return [list(cats) for cats in self.encoder.categories_]

    @property
    def n_out(self) -> int:
        """Number of encoded columns."""
        return sum(len(c) for c in self.encoder.categories_)

    def names(self) -> list[str]:
        """``column=value`` for every encoded column."""
        pairs = zip(self.columns, self.categories, strict=True)
        return [f"{col}={cat}" for col, cats in pairs for cat in cats]

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode rows (float32); a category not seen in train becomes all zeros."""
        return self.encoder.transform(frame[self.columns])


def fit_onehot(frame: pd.DataFrame) -> OneHot:
    """The categories of each column, as seen in these (train) rows."""
    # imported late, as split_indices imports scikit-learn (which loads this module with it)
    from sklearn.preprocessing import OneHotEncoder

    columns = [str(c) for c in frame.columns]
    encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32)
    return OneHot(columns, encoder.fit(frame[columns]))


# --------------------------------------------------------------------------- scaler + PCA


@dataclass
class Preprocessor:
    """Scaling, then optional PCA, both fitted on training rows only."""

    scaler: Scaler
    n_in: int
    pca_requested: int | float | None = None
    mean: np.ndarray | None = None  # PCA centre: the mean of the scaled train rows
    components: np.ndarray | None = None  # (kept components, n_in)
    explained_variance: float | None = None  # fraction of the scaled train variance kept

    @property
    def n_out(self) -> int:
        """Number of features after preprocessing."""
        return self.n_in if self.components is None else int(self.components.shape[0])

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Scale, then project on the kept components; float32."""
        scaled = self.scaler.transform(x)
        if self.components is None:
            return scaled
        return ((scaled - self.mean) @ self.components.T).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        """What was fitted, for logs and reports."""
        return {
            "scaler": self.scaler.kind,
            "pca_requested": self.pca_requested,
            "pca_components": None if self.components is None else self.n_out,
            "explained_variance": (None if self.explained_variance is None
                                   else round(float(self.explained_variance), 6)),
            "n_in": self.n_in,
            "n_out": self.n_out,
        }


def _check_pca_request(pca_components: Any, n_rows: int, n_in: int) -> None:
    """A component count in 1..features (and at most the rows), or a fraction in (0, 1]."""
    if isinstance(pca_components, bool) or not isinstance(pca_components, int | float):
        raise DataError(f"config: preprocess.pca_components: not a number: {pca_components!r}")
    if isinstance(pca_components, int):
        if pca_components < 1 or pca_components > n_in:
            raise DataError(
                f"config: preprocess.pca_components: {pca_components} components, but the data has "
                f"{n_in} feature columns; ask for 1..{n_in} or a variance fraction such as 0.95"
            )
        if pca_components > n_rows:
            raise DataError(
                f"config: preprocess.pca_components: {pca_components} components, but only "
                f"{n_rows} training rows; ask for at most {n_rows}"
            )
    elif not 0 < pca_components <= 1:
        raise DataError(
            f"config: preprocess.pca_components: a variance fraction is in (0, 1], got {pca_components}"
        )


def _principal_axes(scaled: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Mean, components (rows), explained-variance ratios and total variance, by exact SVD."""
    mean = scaled.mean(axis=0)
    _, s, vt = np.linalg.svd(scaled - mean, full_matrices=False)
    # a deterministic sign per component: its largest-magnitude loading is positive
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    vt = vt * np.where(signs == 0, 1.0, signs)[:, None]
    var = s**2
    total = float(var.sum())
    ratio = var / total if total > 0 else np.zeros_like(var)
    return mean, vt, ratio, total


def fit_preprocessor(x_train_raw: np.ndarray, scaler: str, pca_components: int | float | None,
                     seed: int = 0) -> Preprocessor:
    """Fit the scaler, then PCA on the scaled rows; training rows only, never val or test.

    ``pca_components``: None keeps every feature; an int keeps that many components; a float in
    (0, 1] keeps the fewest components whose explained variance reaches that fraction. PCA is
    an exact SVD (deterministic; ``seed`` is accepted for API stability and unused).
    """
    del seed
    x = np.asarray(x_train_raw)
    n_rows, n_in = x.shape
    sc = fit_scaler(x, scaler)
    if pca_components is None:
        return Preprocessor(sc, n_in)
    _check_pca_request(pca_components, n_rows, n_in)
    mean, vt, ratio, total = _principal_axes(sc.transform(x).astype(np.float64))
    if isinstance(pca_components, int):
        k = pca_components
    elif total <= 0:
        k = 1
    else:
        k = int(np.searchsorted(np.cumsum(ratio), pca_components - 1e-9) + 1)
    k = max(1, min(k, len(ratio)))
    return Preprocessor(
        sc, n_in, pca_components, mean.astype(np.float32), vt[:k].astype(np.float32),
        float(ratio[:k].sum()),
    )


# --------------------------------------------------------------------------- the split


@dataclass
class Splits:
    """Preprocessed train/val/test arrays plus what the model and the report need to know.

    ``raw_train``/``raw_val``/``raw_test`` are the rows before scaling and PCA (after one-hot
    encoding), so a search can refit preprocessing per trial or per fold
    (:func:`refit_preprocessing`); ``feature_names`` name their columns.
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

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def n_features(self) -> int:
        """Number of input features after preprocessing."""
        return int(self.x_train.shape[1])

    def sizes(self) -> dict[str, int]:
        """Rows per split."""
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def first_choice(value: Any) -> Any:
    """The fixed value, or the first of ``{choice: [...]}``: the default when not searched."""
    return value["choice"][0] if isinstance(value, dict) else value


def split_indices(ds: Dataset, cfg: DataConfig, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of the stratified train, val and test splits; too few rows is a DataError."""
    from sklearn.model_selection import train_test_split  # imported late: slow

    n = len(ds.y)
    n_classes = len(ds.class_names)
    n_test = max(n_classes, int(round(cfg.test_size * n)))
    n_val = max(n_classes, int(round(cfg.val_size * n)))
    if n - n_test - n_val < n_classes:
        raise DataError(
            f"{data_label(ds)}: {n} rows are too few for a train/val/test split "
            f"(val {n_val}, test {n_test}, and train needs {n_classes}+ for {n_classes} classes); "
            "add rows or lower data.val_size / data.test_size"
        )
    try:
        idx_rest, idx_test = train_test_split(
            np.arange(n), test_size=n_test, stratify=ds.y, random_state=seed
        )
        idx_train, idx_val = train_test_split(
            idx_rest, test_size=n_val, stratify=ds.y[idx_rest], random_state=seed
        )
    except ValueError as err:
        raise DataError(f"{data_label(ds)}: stratified split impossible ({err})") from None
    return idx_train, idx_val, idx_test


def fit_encoding(ds: Dataset, idx_train: np.ndarray) -> OneHot | None:
    """The one-hot encoding of the categorical columns on the train rows; None without any."""
    if ds.categorical is None:
        return None
    return fit_onehot(ds.categorical.iloc[idx_train])


def _features(ds: Dataset, idx: np.ndarray, enc: OneHot | None) -> np.ndarray:
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


def split_and_scale(ds: Dataset, cfg: DataConfig, pre: PreprocessConfig, seed: int) -> Splits:
    """Stratified train/val/test split, then preprocessing fitted on the train split alone.

    Preprocessing uses the fixed choices of ``pre``; a searched field (``{choice: [...]}``)
    takes its first choice here (the search refits per trial with :func:`refit_preprocessing`).
    """
    idx_train, idx_val, idx_test = split_indices(ds, cfg, seed)
    enc = fit_encoding(ds, idx_train)
    raw_train, raw_val, raw_test = (_features(ds, i, enc) for i in (idx_train, idx_val, idx_test))
    prep = fit_preprocessor(raw_train, first_choice(pre.scaler), first_choice(pre.pca_components), seed)
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
        encoding={"categorical_columns": ds.categorical_columns,
                  "encoded_columns": enc.n_out if enc else 0},
        image_shape=ds.image_shape,
    )


def refit_preprocessing(splits: Splits, scaler: str, pca_components: int | float | None,
                        seed: int = 0) -> Splits:
    """The same rows with preprocessing refitted on ``raw_train`` (a trial's own choice)."""
    if splits.raw_train is None or splits.raw_val is None or splits.raw_test is None:
        raise ValueError("these splits carry no raw rows to refit preprocessing on")
    prep = fit_preprocessor(splits.raw_train, scaler, pca_components, seed)
    return dataclasses.replace(
        splits,
        x_train=prep.transform(splits.raw_train),
        x_val=prep.transform(splits.raw_val),
        x_test=prep.transform(splits.raw_test),
        scaler=prep.scaler,
        preprocessor=prep,
        input_shape=_input_shape(splits.image_shape, prep),
    )
