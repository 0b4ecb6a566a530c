"""Big tables: the features are read as float32 (no float64 frame), the frame is released once
the matrix is built, and the numbers are what the untyped read gave."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from paramaudit.config import DataConfig
from paramaudit.data import read
from paramaudit.data.checks import dataset_from_frame, load_dataset
from paramaudit.data.columns import distinct_count
from paramaudit.data.preprocessor import Scaler
from paramaudit.errors import DataError


def numbers_csv(path: Path, rows: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 4)) * [1, 1e-6, 1e6, 3], columns=list("abcd"))
    frame["label"] = np.arange(rows) % 3
    frame.to_csv(path, index=False, float_format="%.17g")
    return frame


def csv_cfg(path: Path) -> DataConfig:
    return DataConfig(path=path, target="label")


@pytest.mark.parametrize("chunk_rows", [read.CHUNK_ROWS, 64])  # one chunk, and several
def test_numeric_csv_reads_float32_same_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                chunk_rows: int) -> None:
    monkeypatch.setattr(read, "CHUNK_ROWS", chunk_rows)
    p = tmp_path / "n.csv"
    numbers_csv(p)
    frame = read.read_table(p, exact={"label"})
    assert {str(frame[c].dtype) for c in "abcd"} == {"float32"}
    assert frame["label"].dtype == np.int64  # integers and exact columns as pandas reads them
    plain = pd.read_csv(p)
    assert np.array_equal(frame[list("abcd")].to_numpy(),
                          plain[list("abcd")].to_numpy().astype(np.float32))
    ds = load_dataset(csv_cfg(p))
    assert ds.x.dtype == np.float32 and ds.x.flags.c_contiguous
    want = plain[list("abcd")].to_numpy().astype(np.float32)
    assert ds.x.tobytes() == want.tobytes()  # byte-identical to the float64 path


def test_text_past_the_sample_falls_back_to_the_plain_read(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read, "SAMPLE_ROWS", 10)
    p = tmp_path / "n.csv"
    frame = numbers_csv(p)
    frame = frame.astype({"a": object, "b": object})
    frame.loc[200, "a"] = "oops"
    frame.loc[201, "b"] = "?"  # a missing-value placeholder, read as missing downstream
    frame.to_csv(p, index=False)
    got = read.read_table(p)
    assert got["a"].dtype != np.float32  # the plain read's column, text and all
    with pytest.raises(DataError, match="'a' is numeric except for 'oops'"):
        load_dataset(csv_cfg(p))


def test_overflow_past_the_sample_keeps_its_message(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read, "SAMPLE_ROWS", 10)
    p = tmp_path / "n.csv"
    frame = numbers_csv(p)
    frame.loc[250, "c"] = 1e39  # beyond float32: the message says so, not "infinite"
    frame.to_csv(p, index=False)
    with pytest.raises(DataError, match="overflow float32"):
        load_dataset(csv_cfg(p))


def test_no_float64_matrix_is_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "n.csv"
    numbers_csv(p, rows=2_000)
    frame = read.read_table(p, exact={"label"})
    seen: list[np.dtype] = []
    real = pd.Series.to_numpy

    def spy(self: pd.Series, *args: object, **kwargs: object) -> np.ndarray:
        out = real(self, *args, **kwargs)
        if self.name in tuple("abcd"):
            seen.append(out.dtype)
        return out

    monkeypatch.setattr(pd.Series, "to_numpy", spy)
    ds = dataset_from_frame(frame, csv_cfg(p), str(p), "hash")
    assert ds.x.dtype == np.float32
    assert np.dtype(np.float64) not in seen and seen


def test_the_frame_is_released_without_the_cyclic_collector(tmp_path: Path) -> None:
    # the CLI checks the input with the garbage collector paused: reference counts alone must
    # free the frame once the matrix is built
    p = tmp_path / "n.csv"
    numbers_csv(p)
    frame = read.read_table(p, exact={"label"})
    gone = weakref.ref(frame)
    gc.disable()
    try:
        ds = dataset_from_frame(frame, csv_cfg(p), str(p), "hash")
        del frame
        assert gone() is None
    finally:
        gc.enable()
    assert ds.x.shape == (300, 4)


def test_distinct_count_is_nunique() -> None:
    s = pd.Series([1.5, np.nan, 1.5, -0.0, 0.0, 2.0], dtype=np.float32)
    assert distinct_count(s) == s.nunique() == 3
    ints = pd.Series([3, 1, 3, 2])
    assert distinct_count(ints) == ints.nunique() == 3
    text = pd.Series(["a", None, "b", "a"])
    assert distinct_count(text) == text.nunique() == 2


def test_scaler_on_float32_is_byte_identical_and_leaves_input_alone() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 6)).astype(np.float32)
    x[3, 1] = np.nan
    before = x.copy()
    sc = Scaler("standard", rng.normal(size=6).astype(np.float32),
                rng.uniform(0.1, 3, 6).astype(np.float32))
    want = ((x - sc.shift) / sc.scale).astype(np.float32)
    got = sc.transform(x)
    assert got.dtype == np.float32
    assert got.tobytes() == want.tobytes()
    assert np.array_equal(x, before, equal_nan=True) and not np.shares_memory(got, x)
