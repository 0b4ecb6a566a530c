"""The fitted preprocessing of numeric features: imputation, missing indicators, the scaler and
PCA, fitted on training rows only (:func:`fit_preprocessor`).

Missing values (``preprocess.impute``: median, mean, most_frequent or constant 0): scikit-learn's
``SimpleImputer`` fills the columns it is given with statistics of the training rows;
``MissingIndicator`` adds a 0/1 column for each column it is given (after the raw ones, before
scaling). Rows without gaps go through unchanged, so data without any gives the same bytes as
before imputation existed.

The scaler and PCA stay hand-written: scikit-learn's scalers give different numbers (see
:class:`Scaler`) while the fitted ones are pickled in the preprocess step's cached result, and
the PCA is an exact SVD with a fixed sign per component (deterministic across machines).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from paramaudit.errors import DataError

if TYPE_CHECKING:
    from sklearn.impute import MissingIndicator, SimpleImputer

IMPUTE_STRATEGIES = ("median", "mean", "most_frequent", "constant")


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
        """Apply the fitted shift and scale; float32 rows give the same bytes with one new
        matrix, not three (the difference, the quotient, the float32 copy)."""
        if x.dtype == np.float32 and self.shift.dtype == self.scale.dtype == np.float32:
            out = np.subtract(x, self.shift)
            return np.divide(out, self.scale, out=out)
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


# --------------------------------------------------------------------------- impute, scale, PCA


@dataclass
class Preprocessor:
    """Imputation (with missing indicators), scaling, then optional PCA; fitted on train rows.

    ``impute_columns`` are the raw columns the imputer fills, ``indicator_columns`` those that
    get a ``COL (missing)`` column (appended after the raw ones, before scaling).
    """

    scaler: Scaler
    n_in: int
    pca_requested: int | float | None = None
    mean: np.ndarray | None = None  # PCA centre: the mean of the scaled train rows
    components: np.ndarray | None = None  # (kept components, n_in + indicators)
    explained_variance: float | None = None  # fraction of the scaled train variance kept
    impute: str = "median"
    imputer: SimpleImputer | None = None
    impute_columns: tuple[int, ...] = ()
    indicator: MissingIndicator | None = None
    indicator_columns: tuple[int, ...] = ()

    @property
    def n_filled(self) -> int:
        """Number of columns after imputation: the raw ones plus the missing indicators."""
        return self.n_in + len(self.indicator_columns)

    @property
    def n_out(self) -> int:
        """Number of features after preprocessing."""
        return self.n_filled if self.components is None else int(self.components.shape[0])

    def filled(self, x: np.ndarray) -> np.ndarray:
        """Missing values imputed and indicators appended; rows without gaps pass unchanged."""
        x = np.asarray(x)
        marks = None
        if self.indicator is not None:
            marks = self.indicator.transform(x[:, list(self.indicator_columns)])
        if self.imputer is not None:
            cols = list(self.impute_columns)
            part = x[:, cols]
            if np.isnan(part).any():
                x = x.copy()
                x[:, cols] = self.imputer.transform(part)
        return x if marks is None else np.hstack([x, marks.astype(x.dtype)])

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Impute, scale, then project on the kept components; float32."""
        scaled = self.scaler.transform(self.filled(x))
        if self.components is None:
            return scaled
        return ((scaled - self.mean) @ self.components.T).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        """What was fitted, for logs and reports; ``n_in`` counts the features the scaler and
        PCA see (the raw columns plus ``missing_indicators``), ``n_out`` the model's inputs."""
        return {
            "impute": self.impute if self.imputer is not None else None,
            "missing_indicators": len(self.indicator_columns),
            "scaler": self.scaler.kind,
            "pca_requested": self.pca_requested,
            "pca_components": None if self.components is None else self.n_out,
            "explained_variance": (None if self.explained_variance is None
                                   else round(float(self.explained_variance), 6)),
            "n_in": self.n_filled,
            "n_out": self.n_out,
        }


def _fit_imputer(x: np.ndarray, impute: str, columns: tuple[int, ...]) -> SimpleImputer | None:
    """SimpleImputer on these (train) rows of ``columns``; None without columns to fill."""
    if not columns:
        return None
    if impute not in IMPUTE_STRATEGIES:
        raise DataError(f"config: preprocess.impute: unknown strategy {impute!r}")
    from sklearn.impute import SimpleImputer  # imported late: slow

    imputer = SimpleImputer(strategy=impute, fill_value=0.0 if impute == "constant" else None,
                            keep_empty_features=True)
    return imputer.fit(x[:, list(columns)])


def _fit_indicator(x: np.ndarray, columns: tuple[int, ...]) -> MissingIndicator | None:
    if not columns:
        return None
    from sklearn.impute import MissingIndicator

    return MissingIndicator(features="all", error_on_new=False).fit(x[:, list(columns)])


def gap_columns(x: np.ndarray) -> tuple[int, ...]:
    """The columns of ``x`` with a missing value (MissingIndicator's missing-only features)."""
    if x.size == 0 or not np.isnan(x).any():
        return ()
    from sklearn.impute import MissingIndicator

    return tuple(int(i) for i in MissingIndicator(features="missing-only").fit(x).features_)


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
                     seed: int = 0, impute: str = "median",
                     impute_columns: tuple[int, ...] | None = None,
                     indicator_columns: tuple[int, ...] | None = None) -> Preprocessor:
    """Fit the imputer, the scaler, then PCA on the scaled rows; training rows only.

    ``impute_columns``: the columns to impute (None: every column); ``indicator_columns``: the
    columns that get a missing indicator (None: those with gaps in these rows). A split passes
    both (:meth:`Splits.missing_columns`) so that every trial and fold sees the same columns.
    ``pca_components``: None keeps every feature; an int keeps that many components; a float in
    (0, 1] keeps the fewest components whose explained variance reaches that fraction. PCA is
    an exact SVD (deterministic; ``seed`` is accepted for API stability and unused).
    """
    del seed
    x = np.asarray(x_train_raw)
    n_rows, n_in = x.shape
    imp_cols = tuple(range(n_in)) if impute_columns is None else tuple(impute_columns)
    ind_cols = gap_columns(x) if indicator_columns is None else tuple(indicator_columns)
    base = Preprocessor(Scaler("none", np.zeros(0), np.ones(0)), n_in, impute=impute,
                        imputer=_fit_imputer(x, impute, imp_cols), impute_columns=imp_cols,
                        indicator=_fit_indicator(x, ind_cols), indicator_columns=ind_cols)
    filled = base.filled(x)
    base.scaler = fit_scaler(filled, scaler)
    if pca_components is None:
        return base
    _check_pca_request(pca_components, n_rows, filled.shape[1])
    mean, vt, ratio, total = _principal_axes(base.scaler.transform(filled).astype(np.float64))
    if isinstance(pca_components, int):
        k = pca_components
    elif total <= 0:
        k = 1
    else:
        k = int(np.searchsorted(np.cumsum(ratio), pca_components - 1e-9) + 1)
    k = max(1, min(k, len(ratio)))
    return dataclasses.replace(
        base, pca_requested=pca_components, mean=mean.astype(np.float32),
        components=vt[:k].astype(np.float32), explained_variance=float(ratio[:k].sum()),
    )
