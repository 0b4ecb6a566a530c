"""Load, validate, split and preprocess tabular classification data.

Built-in sets come from scikit-learn (no download); files are CSV (also ``.csv.gz``, ``.bz2``,
``.xz``, ``.zst`` or ``.zip``) or Parquet read with pandas.
Every problem a user can cause is a one-line :class:`DataError` (or :class:`ConfigError`) that
names the file, column or config field, checked before any server or search starts
(:func:`check_inputs`).

Preprocessing is fitted on the train split only (no leakage): the one-hot encoding of
categorical columns (``data.categorical: onehot``), the scaler and the optional PCA.

Categorical columns (``data.categorical: onehot``):

- a column is categorical when pandas does not read it as numbers (text, booleans, dates);
- the categories are the values seen in the **train** split; a value first seen in val or test
  encodes as all zeros (no crash);
- a missing value (empty cell, NaN) is a category of its own, ``"(missing)"``;
- encoded columns come after the numeric ones, named ``column=value``;
- a column with more than ``MAX_CATEGORIES`` distinct values is refused (an identifier or free
  text, not a category), and so is a column that is numbers except for a few placeholders such
  as ``?`` (a numeric column with a typo, in either mode).
"""

from __future__ import annotations

import bz2
import codecs
import collections
import contextlib
import csv
import dataclasses
import difflib
import gzip
import hashlib
import io
import json
import lzma
import os
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from paramaudit.config import (
    BUILTIN_DATASETS,
    HYPERPARAMETERS,
    DataConfig,
    PipelineConfig,
    PreprocessConfig,
    quote,
)
from paramaudit.errors import ConfigError, DataError

IMAGE_SHAPES = {"digits": (1, 8, 8)}
MIN_PER_CLASS = 3  # one sample each for train, val and test under a stratified split
MAX_CLASSES = 100  # more distinct target values than this is a regression target or an id
MAX_CATEGORIES = 200  # more distinct values in one categorical column is an id or free text
MISSING_CATEGORY = "(missing)"
# bump when preprocessing changes what it produces for the same data and config (cache keys)
PREPROCESS_VERSION = 1


@dataclass
class Dataset:
    """Features and integer labels, before any split.

    ``x`` holds the numeric feature columns (named by ``feature_names``); ``categorical`` holds
    the non-numeric ones as strings when ``data.categorical: onehot`` (encoded after the split,
    on the train rows only), else it is None.
    """

    x: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    class_names: list[str]
    name: str
    content_hash: str
    image_shape: tuple[int, ...] | None = None
    categorical: pd.DataFrame | None = None

    @property
    def categorical_columns(self) -> list[str]:
        """Names of the columns one-hot encoded after the split."""
        return [] if self.categorical is None else [str(c) for c in self.categorical.columns]


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
class OneHot:
    """One-hot encoding of categorical columns with the categories seen in the train split."""

    columns: list[str]
    categories: list[list[str]]

    @property
    def n_out(self) -> int:
        """Number of encoded columns."""
        return sum(len(c) for c in self.categories)

    def names(self) -> list[str]:
        """``column=value`` for every encoded column."""
        pairs = zip(self.columns, self.categories, strict=True)
        return [f"{col}={cat}" for col, cats in pairs for cat in cats]

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode rows; a category not seen in train becomes all zeros."""
        out = np.zeros((len(frame), self.n_out), np.float32)
        start = 0
        for col, cats in zip(self.columns, self.categories, strict=True):
            codes = pd.Categorical(frame[col].to_numpy(), categories=cats).codes
            rows = np.flatnonzero(codes >= 0)
            out[rows, start + codes[rows]] = 1.0
            start += len(cats)
        return out


def fit_onehot(frame: pd.DataFrame) -> OneHot:
    """The categories of each column, as seen in these (train) rows, sorted."""
    columns = [str(c) for c in frame.columns]
    return OneHot(columns, [sorted(set(frame[c].tolist())) for c in frame.columns])


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


# --------------------------------------------------------------------------- loading


def _data_label(ds: Dataset) -> str:
    """How messages name the data: a built-in set by name, anything else as a file."""
    return f"data set {ds.name!r}" if ds.name in BUILTIN_DATASETS else f"data file {ds.name!r}"


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


# the compressions pandas reads by the file's name (compression="infer"), tar archives aside
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd", ".zip": "zip"}
TEXT_SUFFIXES = (".csv", ".txt")
SNIFF_BYTES = 8192  # decompressed bytes the binary-content check reads
MAX_HEADER_BYTES = 8 << 20  # the header line is read whole, but never more than this
MAX_COLUMN_NAME = 1_000  # characters; longer is not a header (and would swell every message)


def _decompression_errors() -> tuple[type[BaseException], ...]:
    """What a corrupt or truncated compressed file raises, by decompressor."""
    errors: list[type[BaseException]] = [OSError, EOFError, lzma.LZMAError, zlib.error,
                                          zipfile.BadZipFile]
    with contextlib.suppress(ImportError):
        import zstandard

        errors.append(zstandard.ZstdError)
    return tuple(errors)


def _formats(path: Path) -> tuple[str, str | None]:
    """The table's suffix and its compression: ``('.csv', 'gzip')`` for ``data.csv.gz``."""
    last = path.suffix.lower()
    if last in COMPRESSIONS:
        return Path(path.stem).suffix.lower(), COMPRESSIONS[last]
    return last, None


@contextlib.contextmanager
def _open_bytes(path: Path, compression: str | None, shown: str) -> Iterator[IO[bytes]]:
    """The file's bytes, decompressed on the fly (nothing is read here)."""
    with contextlib.ExitStack() as stack:
        if compression is None:
            yield stack.enter_context(path.open("rb"))
        elif compression == "gzip":
            yield stack.enter_context(gzip.open(path, "rb"))
        elif compression == "bz2":
            yield stack.enter_context(bz2.open(path, "rb"))
        elif compression == "xz":
            yield stack.enter_context(lzma.open(path, "rb"))
        elif compression == "zstd":
            try:
                import zstandard
            except ImportError:
                raise DataError(f"data file {shown!r}: reading .zst needs the zstandard package "
                                "(pip install zstandard)") from None
            raw = stack.enter_context(path.open("rb"))
            yield stack.enter_context(zstandard.ZstdDecompressor().stream_reader(raw))
        else:
            archive = stack.enter_context(zipfile.ZipFile(path))
            names = archive.namelist()
            if len(names) != 1:  # pandas reads a zip of exactly one file
                raise DataError(f"data file {shown!r}: a zip archive of {len(names)} files; "
                                "a .zip data file holds exactly one CSV")
            yield stack.enter_context(archive.open(names[0]))


def _head(stream: IO[bytes], shown: str) -> tuple[bytes, bool]:
    """The first bytes of the (decompressed) text: at least SNIFF_BYTES and the whole first line,
    and whether that is the whole file. Bounded: a 'header' without a newline is refused."""
    chunks: list[bytes] = []
    size, newline = 0, False
    while size < SNIFF_BYTES or not newline:
        chunk = stream.read(SNIFF_BYTES)
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
        newline = newline or b"\n" in chunk
        if not newline and size >= MAX_HEADER_BYTES:
            raise DataError(f"data file {shown!r}: no line break in the first {MAX_HEADER_BYTES:,} "
                            "bytes; not a CSV file with a header line")
    return b"".join(chunks), False


def _raw_header(head: bytes, at_end: bool, shown: str) -> list[str]:
    """The header's column names, from the first bytes of the text (see :func:`_head`)."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=at_end)
    except UnicodeDecodeError:
        raise DataError(f"data file {shown!r}: not UTF-8 text, not a CSV file (save it as UTF-8)"
                        ) from None
    try:
        return next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error as err:  # e.g. a field longer than the csv module's limit (131,072)
        raise DataError(f"data file {shown!r}: the header line does not parse as CSV ({err})"
                        ) from None


def _check_header(header: list[str], shown: str) -> None:
    long = next((i for i, c in enumerate(header) if len(c) > MAX_COLUMN_NAME), None)
    if long is not None:
        raise DataError(
            f"data file {shown!r}: column {long + 1}'s name is {len(header[long]):,} characters "
            f"(at most {MAX_COLUMN_NAME:,}); is the first line a header?"
        )
    if len(header) == 1:
        # one column: often a file saved with another separator (and maybe decimal commas)
        for sep, word in ((";", "';'"), ("\t", "tabs"), ("|", "'|'")):
            if sep in header[0]:
                raise DataError(
                    f"data file {shown!r}: one column {header[0][:60]!r}: the file looks separated "
                    f"by {word}, not commas; save it comma-separated"
                )
    dupes = sorted(c for c, n in collections.Counter(header).items() if n > 1)
    if dupes:
        names = ", ".join(c if len(c) <= 40 else f"{c[:40]}..." for c in dupes[:5])
        raise DataError(f"data file {shown!r}: duplicate column names {names}"
                        f"{f' (and {len(dupes) - 5} more)' if len(dupes) > 5 else ''}")


def _not_found(shown: str, path: Path) -> DataError:
    if path.is_absolute():
        return DataError(f"data file {shown!r}: not found")
    return DataError(
        f"data file {shown!r}: not found in the working directory {os.getcwd()!r} "
        "(relative paths, also in a config file, are resolved against the working directory)"
    )


def _read_table(path: Path) -> pd.DataFrame:
    shown = str(path)
    if not path.exists():
        raise _not_found(shown, path)
    if path.is_dir():
        raise DataError(f"data file {shown!r}: is a directory; give a CSV or Parquet file")
    if not path.is_file():
        raise DataError(f"data file {shown!r}: not a regular file")
    if path.stat().st_size == 0:
        raise DataError(f"data file {shown!r}: the file is empty")
    suffix, compression = _formats(path)
    if suffix in (".parquet", ".pq") and compression is None:
        try:
            return pd.read_parquet(path)
        except Exception as err:  # pyarrow raises many types for a corrupt file
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise DataError(f"data file {shown!r}: not a readable Parquet file ({first})") from None
    if suffix not in TEXT_SUFFIXES:
        whole = "".join(path.suffixes[-2:]).lower() if compression else suffix
        fix = ("save it as CSV" if suffix in (".xlsx", ".xls", ".ods", ".xlsm")
               else f"use .csv (also compressed: .csv{', .csv'.join(COMPRESSIONS)}) or .parquet")
        raise DataError(f"data file {shown!r}: unsupported format {whole!r}; {fix}")
    broken = _decompression_errors() if compression else ()
    what = f"{compression} file" if compression else "file"
    try:
        with _open_bytes(path, compression, shown) as stream:
            head, at_end = _head(stream, shown)
    except broken as err:
        raise DataError(f"data file {shown!r}: a corrupt or truncated {what} "
                        f"({_first_line(err)})") from None
    if b"\x00" in head[:SNIFF_BYTES]:
        raise DataError(f"data file {shown!r}: binary content, not a CSV text file")
    _check_header(_raw_header(head, at_end, shown), shown)
    try:
        frame = pd.read_csv(path)  # compression="infer": the same decompressor, by the name
    except pd.errors.EmptyDataError:
        raise DataError(f"data file {shown!r}: no columns to read") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"data file {shown!r}: cannot be parsed as CSV ({_first_line(err)})") from None
    except broken as err:  # past the part read above: corrupt or cut short
        raise DataError(f"data file {shown!r}: a corrupt or truncated {what} "
                        f"({_first_line(err)})") from None
    return frame


def _first_line(err: BaseException) -> str:
    """An exception's first line, cut short: a message quotes at most about 80 characters."""
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return text if len(text) <= 120 else f"{text[:120]}..."


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


def _categorical_frame(features: pd.DataFrame, columns: list[str], shown: str) -> pd.DataFrame:
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


def _from_frame(frame: pd.DataFrame, target: str, name: str, digest: str,
                categorical: str = "error") -> Dataset:
    shown = name
    frame = frame.rename(columns=str)
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
    uniques = labels.unique().tolist()
    n_rows = len(labels)
    if len(uniques) > MAX_CLASSES or (len(uniques) > n_rows / 2 and len(uniques) > 2):
        raise DataError(
            f"data file {shown!r}: target column {target!r} has {len(uniques)} distinct values in "
            f"{n_rows} rows: a continuous (regression) target or an identifier? paramaudit trains "
            f"classifiers (at most {MAX_CLASSES} classes, {MIN_PER_CLASS}+ rows each); "
            "bin it into classes or name the label column"
        )
    features = frame.drop(columns=[target])
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
    numeric = features.drop(columns=non_numeric)
    x = numeric.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        cols = [str(numeric.columns[i]) for i in np.where(bad.any(axis=0))[0]]
        raise DataError(
            f"data file {shown!r}: NaN or infinite values in feature columns {', '.join(cols[:5])}"
        )
    if np.abs(x).max(initial=0.0) > np.finfo(np.float32).max:
        raise DataError(f"data file {shown!r}: feature values overflow float32")
    cats = _categorical_frame(features, non_numeric, shown) if non_numeric else None
    # numeric labels keep their numeric order (0, 1, 2, ..., 10), others sort as text
    is_numeric = pd.api.types.is_numeric_dtype(labels)
    classes = sorted(uniques) if is_numeric else sorted(uniques, key=str)
    index = {c: i for i, c in enumerate(classes)}
    y = labels.map(index).to_numpy(dtype=np.int64)
    return Dataset(
        x.astype(np.float32), y, [str(c) for c in numeric.columns], [str(c) for c in classes],
        name, digest, categorical=cats,
    )


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _apply_image_shape(ds: Dataset, shape: list[int]) -> None:
    c, h, w = shape
    if ds.categorical is not None:
        raise DataError(
            f"config: data.image_shape: {_data_label(ds)} has categorical columns "
            f"{', '.join(ds.categorical_columns[:3])}; image data is numeric pixels only"
        )
    if c * h * w != ds.x.shape[1]:
        raise DataError(
            f"config: data.image_shape: {c}x{h}x{w} = {c * h * w} pixels, but {_data_label(ds)} has "
            f"{ds.x.shape[1]} feature columns; the product must equal the number of features"
        )
    ds.image_shape = (c, h, w)


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load the configured data set and check it can be split and trained on."""
    if cfg.dataset is not None:
        ds = _builtin(cfg.dataset)
    else:
        assert cfg.path is not None and cfg.target is not None  # the config validated this
        path = Path(cfg.path)
        frame = _read_table(path)
        ds = _from_frame(frame, cfg.target, str(path), file_digest(path), cfg.categorical)
    if cfg.image_shape is not None:
        _apply_image_shape(ds, cfg.image_shape)
    check_dataset(ds)  # before subsampling too: a stratified subsample needs the same guarantees
    if cfg.max_rows is not None and len(ds.y) > cfg.max_rows:
        from sklearn.model_selection import train_test_split  # imported late: slow, and not for errors

        try:
            keep, _ = train_test_split(
                np.arange(len(ds.y)), train_size=cfg.max_rows, stratify=ds.y, random_state=0
            )
        except ValueError as err:
            raise DataError(
                f"config: data.max_rows: a stratified subsample of {cfg.max_rows} rows of data "
                f"{ds.name!r} is impossible ({err}); raise max_rows"
            ) from None
        keep = np.sort(keep)
        ds.x, ds.y = ds.x[keep], ds.y[keep]
        if ds.categorical is not None:
            ds.categorical = ds.categorical.iloc[keep].reset_index(drop=True)
    check_dataset(ds)
    return ds


def check_dataset(ds: Dataset) -> None:
    """Refuse data a stratified three-way split or a classifier cannot use."""
    counts = np.bincount(ds.y, minlength=len(ds.class_names))
    present = int((counts > 0).sum())
    if present < 2:
        raise DataError(f"{_data_label(ds)}: the target has one class; need at least two")
    small = [ds.class_names[i] for i, n in enumerate(counts) if 0 < n < MIN_PER_CLASS]
    if small:
        raise DataError(
            f"{_data_label(ds)}: class {small[0]!r} has {int(counts[ds.class_names.index(small[0])])}"
            f" sample(s); a stratified train/val/test split needs at least {MIN_PER_CLASS} per class"
        )


# --------------------------------------------------------------------------- preprocessing


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
    scaled = sc.transform(x).astype(np.float64)
    mean = scaled.mean(axis=0)
    _, s, vt = np.linalg.svd(scaled - mean, full_matrices=False)
    # a deterministic sign per component: its largest-magnitude loading is positive
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    vt = vt * np.where(signs == 0, 1.0, signs)[:, None]
    var = s**2
    total = float(var.sum())
    ratio = var / total if total > 0 else np.zeros_like(var)
    if isinstance(pca_components, int):
        k = pca_components
    elif total <= 0:
        k = 1
    else:
        k = int(np.searchsorted(np.cumsum(ratio), pca_components - 1e-9) + 1)
    k = max(1, min(k, len(s)))
    return Preprocessor(
        sc, n_in, pca_components, mean.astype(np.float32), vt[:k].astype(np.float32),
        float(ratio[:k].sum()),
    )


def first_choice(value: Any) -> Any:
    """The fixed value, or the first of ``{choice: [...]}``: the default when not searched."""
    return value["choice"][0] if isinstance(value, dict) else value


def _choices(value: Any) -> list[Any]:
    return list(value["choice"]) if isinstance(value, dict) else [value]


def _split_indices(ds: Dataset, cfg: DataConfig, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    n = len(ds.y)
    n_classes = len(ds.class_names)
    n_test = max(n_classes, int(round(cfg.test_size * n)))
    n_val = max(n_classes, int(round(cfg.val_size * n)))
    if n - n_test - n_val < n_classes:
        raise DataError(
            f"{_data_label(ds)}: {n} rows are too few for a train/val/test split "
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
        raise DataError(f"{_data_label(ds)}: stratified split impossible ({err})") from None
    return idx_train, idx_val, idx_test


def _encoded(ds: Dataset, idx_train: np.ndarray) -> OneHot | None:
    if ds.categorical is None:
        return None
    return fit_onehot(ds.categorical.iloc[idx_train])


def _features(ds: Dataset, idx: np.ndarray, enc: OneHot | None) -> np.ndarray:
    if enc is None:
        return ds.x[idx]
    assert ds.categorical is not None
    return np.hstack([ds.x[idx], enc.transform(ds.categorical.iloc[idx])]).astype(np.float32)


def _input_shape(image_shape: tuple[int, ...] | None, prep: Preprocessor) -> tuple[int, ...]:
    if image_shape is not None and prep.components is None:
        return tuple(image_shape)
    return (prep.n_out,)


def split_and_scale(ds: Dataset, cfg: DataConfig, pre: PreprocessConfig, seed: int) -> Splits:
    """Stratified train/val/test split, then preprocessing fitted on the train split alone.

    Preprocessing uses the fixed choices of ``pre``; a searched field (``{choice: [...]}``)
    takes its first choice here (the search refits per trial with :func:`refit_preprocessing`).
    """
    idx_train, idx_val, idx_test = _split_indices(ds, cfg, seed)
    enc = _encoded(ds, idx_train)
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


# --------------------------------------------------------------------------- validation


def _check_preprocess_choices(pre: PreprocessConfig, ds: Dataset, n_features: int,
                              n_train: int | None = None, encoded: int = 0) -> None:
    """Every choice of preprocess.* must work on this data (each is tried by some trial)."""
    after = f" ({encoded} of them from one-hot encoding)" if encoded else ""
    for k in _choices(pre.pca_components):
        if isinstance(k, int) and not isinstance(k, bool):
            if k > n_features:
                raise ConfigError(
                    f"config: preprocess.pca_components: {k} components, but {_data_label(ds)} has "
                    f"{n_features} feature columns{after}; ask for at most {n_features} or a "
                    "variance fraction such as 0.95"
                )
            if n_train is not None and k > n_train:
                raise ConfigError(
                    f"config: preprocess.pca_components: {k} components, but the train split of "
                    f"{_data_label(ds)} has {n_train} rows; ask for at most {n_train}"
                )
    if any(_choices(pre.augment)) and ds.image_shape is None:
        raise ConfigError(
            f"config: preprocess.augment: augmentation needs image data, but {_data_label(ds)} is "
            "tabular; declare data.image_shape: [channels, height, width] or set augment: false"
        )
    if any(_choices(pre.augment)) and any(k is not None for k in _choices(pre.pca_components)):
        raise ConfigError(
            "config: preprocess.augment: augmentation shifts and rotates images, and PCA turns "
            "them into components first; search one or the other"
        )


def _kernel_sizes(space: dict[str, Any]) -> list[int]:
    value = space.get("kernel_size", HYPERPARAMETERS["kernel_size"][1])
    if isinstance(value, dict):
        kind, args = next(iter(value.items()))
        return [args[1] - 1] if kind == "randint" else [int(v) for v in args]
    return [int(value)]


def check_preprocessing(cfg: PipelineConfig, ds: Dataset) -> None:
    """Preprocessing and model choices that cannot work on this data: a one-line ConfigError.

    pca_components above the number of features (after one-hot) or train rows, augmentation or
    a CNN on non-image data, PCA before a CNN, a CNN kernel larger than the image.
    """
    idx_train, _, _ = _split_indices(ds, cfg.data, cfg.seed)
    enc = _encoded(ds, idx_train)
    encoded = enc.n_out if enc else 0
    n_features = ds.x.shape[1] + encoded
    _check_preprocess_choices(cfg.preprocess, ds, n_features, len(idx_train), encoded)
    if "cnn" in cfg.model_choices():
        if ds.image_shape is None:
            raise ConfigError(
                f"config: model: cnn needs image data, but {_data_label(ds)} is tabular; use mlp "
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
                f"{ds.image_shape[1]}x{ds.image_shape[2]} images of {_data_label(ds)}; "
                f"use kernels of at most {side}"
            )


def check_split(cfg: PipelineConfig, ds: Dataset) -> None:
    """The train/val/test split works, and k-fold (search.cv_folds) has rows for every fold."""
    idx_train, idx_val, _ = _split_indices(ds, cfg.data, cfg.seed)
    folds = cfg.search.cv_folds
    if folds is None:
        return
    rest = np.concatenate([idx_train, idx_val])
    if len(rest) < folds:
        raise ConfigError(
            f"config: search.cv_folds: {folds} folds, but {_data_label(ds)} has only {len(rest)} rows "
            "outside the test split; lower cv_folds or add rows"
        )
    counts = np.bincount(ds.y[rest], minlength=len(ds.class_names))
    worst = int(np.argmin(counts))
    if counts[worst] < folds:
        raise ConfigError(
            f"config: search.cv_folds: {folds} stratified folds need {folds}+ rows of every class "
            f"outside the test split, but class {ds.class_names[worst]!r} of {_data_label(ds)} has "
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


def preprocess(cfg: DataConfig, pre: PreprocessConfig, seed: int) -> Splits:
    """Load, validate, split and preprocess: step 1 of the pipeline (see also :func:`prepare`)."""
    ds = load_dataset(cfg)
    idx_train, _, _ = _split_indices(ds, cfg, seed)
    enc = _encoded(ds, idx_train)
    encoded = enc.n_out if enc else 0
    _check_preprocess_choices(pre, ds, ds.x.shape[1] + encoded, len(idx_train), encoded)
    return split_and_scale(ds, cfg, pre, seed)


def prepare(cfg: PipelineConfig) -> Splits:
    """Step 1 with every check of :func:`check_inputs` (model and k-fold too), then the split."""
    ds = check_inputs(cfg)
    return split_and_scale(ds, cfg.data, cfg.preprocess, cfg.seed)


# --------------------------------------------------------------------------- caching


def data_content_hash(cfg: DataConfig) -> str:
    """A cheap digest of the data's content: the file's bytes, or a built-in set's name and the
    scikit-learn version that ships it (nothing is loaded)."""
    if cfg.dataset is not None:
        import sklearn

        source = f"builtin:{cfg.dataset}:scikit-learn {sklearn.__version__}"
        return hashlib.sha256(source.encode()).hexdigest()
    assert cfg.path is not None
    path = Path(cfg.path)
    if not path.is_file():
        raise _not_found(str(path), path) if not path.exists() else DataError(
            f"data file {str(path)!r}: not a regular file")
    return file_digest(path)


def preprocess_cache_key(cfg: DataConfig, pre: PreprocessConfig, seed: int) -> str:
    """SHA-256 over the data's content hash, the data and preprocessing config and the seed.

    Stable across processes; changes when the file's bytes, any data.* or preprocess.* setting,
    the seed or :data:`PREPROCESS_VERSION` changes. Hashes the file, never loads it.
    """
    payload = {
        "version": PREPROCESS_VERSION,
        "data_content": data_content_hash(cfg),
        "data": cfg.model_dump(mode="json"),
        "preprocess": pre.model_dump(mode="json"),
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
