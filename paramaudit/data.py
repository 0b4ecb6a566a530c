"""Load, validate, split and scale tabular classification data.

Built-in sets come from scikit-learn (no download); files are CSV or Parquet read with pandas.
Every problem a user can cause is a one-line :class:`DataError` that names the file or column.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from paramaudit.config import DataConfig, PreprocessConfig
from paramaudit.errors import DataError

IMAGE_SHAPES = {"digits": (1, 8, 8)}
MIN_PER_CLASS = 3  # one sample each for train, val and test under a stratified split


@dataclass
class Dataset:
    """Features and integer labels, before any split."""

    x: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    class_names: list[str]
    name: str
    content_hash: str
    image_shape: tuple[int, ...] | None = None


@dataclass
class Scaler:
    """Per-feature affine map fitted on the training split only."""

    kind: str
    shift: np.ndarray
    scale: np.ndarray

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Apply the fitted shift and scale."""
        return ((x - self.shift) / self.scale).astype(np.float32)


@dataclass
class Splits:
    """Scaled train/val/test arrays plus what the model and the report need to know."""

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


def _builtin(name: str) -> Dataset:
    from sklearn import datasets

    loader = {
        "digits": datasets.load_digits,
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
    }[name]
    bunch = loader()
    x = np.asarray(bunch.data, dtype=np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    names = [str(c) for c in getattr(bunch, "target_names", sorted(set(y.tolist())))]
    digest = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()
    features = [str(f) for f in getattr(bunch, "feature_names", [f"x{i}" for i in range(x.shape[1])])]
    return Dataset(x, y, features, names, name, digest, IMAGE_SHAPES.get(name))


def _raw_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8", errors="strict") as fh:
        return next(csv.reader(fh), [])


def _read_table(path: Path) -> pd.DataFrame:
    shown = str(path)
    if not path.exists():
        raise DataError(f"data file {shown!r}: not found")
    if not path.is_file():
        raise DataError(f"data file {shown!r}: not a regular file")
    if path.stat().st_size == 0:
        raise DataError(f"data file {shown!r}: the file is empty")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except Exception as err:  # pyarrow raises many types for a corrupt file
            raise DataError(f"data file {shown!r}: not a readable Parquet file ({err})") from None
    if suffix not in (".csv", ".txt"):
        raise DataError(f"data file {shown!r}: unsupported format {suffix!r}; use .csv or .parquet")
    with path.open("rb") as fh:
        if b"\x00" in fh.read(8192):
            raise DataError(f"data file {shown!r}: binary content, not a CSV text file")
    try:
        header = _raw_header(path)
    except UnicodeDecodeError:
        raise DataError(f"data file {shown!r}: not UTF-8 text, not a CSV file") from None
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise DataError(f"data file {shown!r}: duplicate column names {', '.join(dupes)}")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"data file {shown!r}: no columns to read") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"data file {shown!r}: cannot be parsed as CSV ({first})") from None
    return frame


def _from_frame(frame: pd.DataFrame, target: str, name: str, digest: str) -> Dataset:
    shown = name
    if frame.shape[0] == 0:
        raise DataError(f"data file {shown!r}: a header but no rows")
    if target not in frame.columns:
        hint = difflib.get_close_matches(target, [str(c) for c in frame.columns], n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise DataError(f"data file {shown!r}: target column {target!r} not found{extra}")
    if frame.shape[1] < 2:
        raise DataError(f"data file {shown!r}: no feature columns besides the target")
    labels = frame[target]
    if labels.isna().any():
        raise DataError(
            f"data file {shown!r}: target column {target!r} has {int(labels.isna().sum())} "
            "missing values"
        )
    features = frame.drop(columns=[target])
    non_numeric = [str(c) for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])
                   or pd.api.types.is_bool_dtype(features[c])]
    if non_numeric:
        raise DataError(
            f"data file {shown!r}: non-numeric feature columns {', '.join(non_numeric[:5])}"
            f"{' ...' if len(non_numeric) > 5 else ''}"
        )
    x = features.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        cols = [str(features.columns[i]) for i in np.where(bad.any(axis=0))[0]]
        raise DataError(
            f"data file {shown!r}: NaN or infinite values in feature columns {', '.join(cols[:5])}"
        )
    if np.abs(x).max(initial=0.0) > np.finfo(np.float32).max:
        raise DataError(f"data file {shown!r}: feature values overflow float32")
    uniques = labels.unique().tolist()
    # numeric labels keep their numeric order (0, 1, 2, ..., 10), others sort as text
    numeric = pd.api.types.is_numeric_dtype(labels)
    classes = sorted(uniques) if numeric else sorted(uniques, key=str)
    index = {c: i for i, c in enumerate(classes)}
    y = labels.map(index).to_numpy(dtype=np.int64)
    return Dataset(
        x.astype(np.float32), y, [str(c) for c in features.columns], [str(c) for c in classes],
        name, digest,
    )


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load the configured data set and check it can be split and trained on."""
    if cfg.dataset is not None:
        ds = _builtin(cfg.dataset)
    else:
        assert cfg.path is not None and cfg.target is not None  # the config validated this
        path = Path(cfg.path)
        frame = _read_table(path)
        ds = _from_frame(frame, cfg.target, str(path), file_digest(path))
    check_dataset(ds)  # before subsampling too: a stratified subsample needs the same guarantees
    if cfg.max_rows is not None and len(ds.y) > cfg.max_rows:
        keep, _ = train_test_split(
            np.arange(len(ds.y)), train_size=cfg.max_rows, stratify=ds.y, random_state=0
        )
        keep = np.sort(keep)
        ds.x, ds.y = ds.x[keep], ds.y[keep]
    check_dataset(ds)
    return ds


def check_dataset(ds: Dataset) -> None:
    """Refuse data a stratified three-way split or a classifier cannot use."""
    counts = np.bincount(ds.y, minlength=len(ds.class_names))
    present = int((counts > 0).sum())
    if present < 2:
        raise DataError(f"data {ds.name!r}: the target has one class; need at least two")
    small = [ds.class_names[i] for i, n in enumerate(counts) if 0 < n < MIN_PER_CLASS]
    if small:
        raise DataError(
            f"data {ds.name!r}: class {small[0]!r} has {int(counts[ds.class_names.index(small[0])])}"
            f" sample(s); a stratified train/val/test split needs at least {MIN_PER_CLASS} per class"
        )


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
        raise DataError(f"preprocess.scaler: unknown scaler {kind!r}")
    # a constant feature would divide by zero; leave it centred instead
    scale = np.where(scale > 1e-12, scale, 1.0)
    return Scaler(kind, shift.astype(np.float32), scale.astype(np.float32))


def split_and_scale(ds: Dataset, cfg: DataConfig, pre: PreprocessConfig, seed: int) -> Splits:
    """Stratified train/val/test split, then scaling fitted on the train split alone."""
    n = len(ds.y)
    n_test = max(len(ds.class_names), int(round(cfg.test_size * n)))
    n_val = max(len(ds.class_names), int(round(cfg.val_size * n)))
    if n - n_test - n_val < len(ds.class_names):
        raise DataError(f"data {ds.name!r}: {n} rows are too few for a train/val/test split")
    try:
        idx_rest, idx_test = train_test_split(
            np.arange(n), test_size=n_test, stratify=ds.y, random_state=seed
        )
        idx_train, idx_val = train_test_split(
            idx_rest, test_size=n_val, stratify=ds.y[idx_rest], random_state=seed
        )
    except ValueError as err:
        raise DataError(f"data {ds.name!r}: stratified split impossible ({err})") from None
    scaler = fit_scaler(ds.x[idx_train], pre.scaler)
    return Splits(
        x_train=scaler.transform(ds.x[idx_train]),
        y_train=ds.y[idx_train],
        x_val=scaler.transform(ds.x[idx_val]),
        y_val=ds.y[idx_val],
        x_test=scaler.transform(ds.x[idx_test]),
        y_test=ds.y[idx_test],
        feature_names=ds.feature_names,
        class_names=ds.class_names,
        name=ds.name,
        content_hash=ds.content_hash,
        scaler=scaler,
        input_shape=ds.image_shape or (ds.x.shape[1],),
        raw_train=ds.x[idx_train],
        raw_val=ds.x[idx_val],
    )


def preprocess(cfg: DataConfig, pre: PreprocessConfig, seed: int) -> Splits:
    """Load, validate, split and scale: step 1 of the pipeline."""
    return split_and_scale(load_dataset(cfg), cfg, pre, seed)
