"""Reading the data: a built-in set, or a CSV (plain or compressed) or Parquet file into a frame.

Everything here is about the bytes: the file exists and is a file, the compression opens, the
text is UTF-8, the header line is a comma-separated header. What the columns hold is checked
afterwards (:mod:`paramaudit.data.load`). Every problem is a one-line :class:`DataError` that
names the file, and no read is unbounded: the header is sniffed from at most
``MAX_HEADER_BYTES`` decompressed bytes before pandas reads the whole file.

A big table is read typed: the columns pandas reads as floating-point numbers in the first
``SAMPLE_ROWS`` rows are read as float32 (the matrix they become), never as a float64 frame;
a table of numbers only is read in chunks of ``CHUNK_ROWS`` rows, which halves the reader's
peak. A later row that breaks the sample's types (text in a column of numbers, a number beyond
float32) makes it read the file again untyped, so the result is what a plain read gives.
"""

from __future__ import annotations

import bz2
import codecs
import collections
import contextlib
import csv
import gzip
import hashlib
import io
import lzma
import os
import warnings
import zipfile
import zlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from paramaudit.config import BUILTIN_DATASETS
from paramaudit.data.inputs import InputColumn, numeric_inputs
from paramaudit.errors import DataError

IMAGE_SHAPES = {"digits": (1, 8, 8)}
# the compressions pandas reads by the file's name (compression="infer"), tar archives aside
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd", ".zip": "zip"}
TEXT_SUFFIXES = (".csv", ".txt")
SPREADSHEET_SUFFIXES = (".xlsx", ".xls", ".ods", ".xlsm")
SNIFF_BYTES = 8192  # decompressed bytes the binary-content check reads
MAX_HEADER_BYTES = 8 << 20  # the header line is read whole, but never more than this
MAX_COLUMN_NAME = 1_000  # characters; longer is not a header (and would swell every message)
SAMPLE_ROWS = 10_000  # rows whose parsed types decide the typed read
CHUNK_ROWS = 100_000  # rows per chunk of a table of numbers only


@dataclass
class Dataset:
    """Features and integer labels, before any split.

    ``x`` holds the numeric features as one float32 matrix (named by ``feature_names``; a
    missing value is NaN, imputed after the split); ``sources`` names the raw column each came
    from (a date column gives several). ``categorical`` holds the categorical columns as
    strings (a missing value is ``"(missing)"``), encoded after the split on the train rows
    only; None without any. ``columns_report`` has one row per raw column (its kind and what
    becomes of it) and ``row_counts`` the rows read and dropped (:mod:`paramaudit.data.load`).
    """

    x: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    class_names: list[str]
    name: str
    content_hash: str
    image_shape: tuple[int, ...] | None = None
    categorical: pd.DataFrame | None = None
    sources: list[str] | None = None
    columns_report: list[dict[str, Any]] = field(default_factory=list)
    row_counts: dict[str, int] = field(default_factory=dict)
    # for the served model: how new rows' raw columns are read (data.inputs), a few raw rows as
    # its input example, and the classes as the target's own values (strings stay strings)
    inputs: list[InputColumn] = field(default_factory=list)
    example: pd.DataFrame | None = None
    class_values: list[Any] = field(default_factory=list)
    # each row's position in the file (rows without a target and a subsample's others gone)
    row_ids: np.ndarray | None = None

    @property
    def categorical_columns(self) -> list[str]:
        """Names of the columns encoded after the split."""
        return [] if self.categorical is None else [str(c) for c in self.categorical.columns]

    @property
    def feature_sources(self) -> list[str]:
        """The raw column of every numeric feature (a feature's own name unless expanded)."""
        return list(self.sources) if self.sources is not None else list(self.feature_names)


def data_label(ds: Dataset) -> str:
    """How messages name the data: a built-in set by name, anything else as a file."""
    return f"data set {ds.name!r}" if ds.name in BUILTIN_DATASETS else f"data file {ds.name!r}"


def load_builtin(name: str) -> Dataset:
    """One of scikit-learn's bundled data sets (no download), as a :class:`Dataset`."""
    from sklearn import datasets  # imported late: slow, and not needed to refuse bad input

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
    return with_numeric_inputs(Dataset(x, y, features, names, name, digest, IMAGE_SHAPES.get(name)))


def with_numeric_inputs(ds: Dataset) -> Dataset:
    """A built-in set's served inputs: its features as numbers, under their names."""
    ds.inputs = numeric_inputs(ds.feature_names)
    ds.example = pd.DataFrame(ds.x[:5].astype(np.float64), columns=ds.feature_names)
    ds.class_values = list(ds.class_names)
    ds.row_ids = np.arange(len(ds.y))
    return ds


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def not_found(shown: str, path: Path) -> DataError:
    """The error for a missing data file; a relative path names the directory it was looked in."""
    if path.is_absolute():
        return DataError(f"data file {shown!r}: not found")
    return DataError(
        f"data file {shown!r}: not found in the working directory {os.getcwd()!r} "
        "(relative paths, also in a config file, are resolved against the working directory)"
    )


def first_line(err: BaseException) -> str:
    """An exception's first line, cut short: a message quotes at most about 120 characters."""
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return text if len(text) <= 120 else f"{text[:120]}..."


# --------------------------------------------------------------------------- compression


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


# --------------------------------------------------------------------------- the header line


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
    """Refuse a header pandas would misread: overlong names, another separator, duplicates."""
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


# --------------------------------------------------------------------------- whole files


def _check_file(path: Path, shown: str) -> None:
    """The path names a non-empty regular file."""
    if not path.exists():
        raise not_found(shown, path)
    if path.is_dir():
        raise DataError(f"data file {shown!r}: is a directory; give a CSV or Parquet file")
    if not path.is_file():
        raise DataError(f"data file {shown!r}: not a regular file")
    if path.stat().st_size == 0:
        raise DataError(f"data file {shown!r}: the file is empty")


def _read_parquet(path: Path, shown: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as err:  # pyarrow raises many types for a corrupt file
        raise DataError(f"data file {shown!r}: not a readable Parquet file ({first_line(err)})"
                        ) from None


def _unsupported(path: Path, suffix: str, compression: str | None, shown: str) -> DataError:
    whole = "".join(path.suffixes[-2:]).lower() if compression else suffix
    fix = ("save it as CSV" if suffix in SPREADSHEET_SUFFIXES
           else f"use .csv (also compressed: .csv{', .csv'.join(COMPRESSIONS)}) or .parquet")
    return DataError(f"data file {shown!r}: unsupported format {whole!r}; {fix}")


def _float32_columns(sample: pd.DataFrame, exact: Collection[str]) -> dict[Any, Any]:
    """The sample's floating-point columns, but ``exact``'s: read as float32."""
    return {c: np.float32 for c in sample.columns
            if str(c) not in exact and sample[c].dtype == np.float64}


def _typed_read(path: Path, exact: Collection[str]) -> pd.DataFrame:
    """The whole CSV, its float columns read as float32 (see the module docstring); the same
    frame as ``pd.read_csv(path)`` but for those columns' dtype."""
    sample = pd.read_csv(path, nrows=SAMPLE_ROWS)
    floats = _float32_columns(sample, exact)
    if not floats:
        return pd.read_csv(path)
    numbers_only = all(pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t)
                       for t in sample.dtypes)
    del sample
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # float32 overflow: checked below
            if numbers_only:
                # chunks, then one copy: about twice the frame at the peak, not four times
                frame = pd.concat(list(pd.read_csv(path, dtype=floats, chunksize=CHUNK_ROWS)),
                                  ignore_index=True)
            else:
                frame = pd.read_csv(path, dtype=floats)
    except ValueError:  # text in a column the sample had as numbers: read it as pandas would
        return pd.read_csv(path)
    if (numbers_only and any(not pd.api.types.is_numeric_dtype(t) for t in frame.dtypes)) or any(
            np.isinf(frame[c].to_numpy()).any() for c in floats):
        # a chunk of text, or a value beyond float32 (or inf): the plain read and its messages
        del frame
        return pd.read_csv(path)
    return frame


def _read_csv(path: Path, compression: str | None, shown: str,
              exact: Collection[str] = ()) -> pd.DataFrame:
    """Sniff the (decompressed) start of the text, then let pandas read the whole file."""
    broken = _decompression_errors() if compression else ()
    what = f"{compression} file" if compression else "file"
    try:
        with _open_bytes(path, compression, shown) as stream:
            head, at_end = _head(stream, shown)
    except broken as err:
        raise DataError(f"data file {shown!r}: a corrupt or truncated {what} "
                        f"({first_line(err)})") from None
    if b"\x00" in head[:SNIFF_BYTES]:
        raise DataError(f"data file {shown!r}: binary content, not a CSV text file")
    _check_header(_raw_header(head, at_end, shown), shown)
    try:
        # compression="infer": the same decompressor, by the name
        return _typed_read(path, exact)
    except pd.errors.EmptyDataError:
        raise DataError(f"data file {shown!r}: no columns to read") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"data file {shown!r}: cannot be parsed as CSV ({first_line(err)})") from None
    except broken as err:  # past the part read above: corrupt or cut short
        raise DataError(f"data file {shown!r}: a corrupt or truncated {what} "
                        f"({first_line(err)})") from None


def read_table(path: Path, exact: Collection[str] = ()) -> pd.DataFrame:
    """The file as a frame: Parquet, or CSV (also .gz, .bz2, .xz, .zst or a one-file .zip).

    A CSV's floating-point columns come as float32 (the features' own type), but those named in
    ``exact`` (the target, columns whose kind the config sets): as pandas reads them.
    """
    shown = str(path)
    _check_file(path, shown)
    suffix, compression = _formats(path)
    if suffix in (".parquet", ".pq") and compression is None:
        return _read_parquet(path, shown)
    if suffix not in TEXT_SUFFIXES:
        raise _unsupported(path, suffix, compression, shown)
    return _read_csv(path, compression, shown, exact)
