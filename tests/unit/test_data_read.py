"""Reading data (paramaudit.data.read): built-in sets, CSV and Parquet, compression, the header line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.tables import csv_cfg, data_error, labelled_frame

from paramaudit.config import DataConfig
from paramaudit.data import read
from paramaudit.data.checks import load_dataset
from paramaudit.data.read import Dataset, file_digest
from paramaudit.errors import UserInputError

# --------------------------------------------------------------------------- built-in sets


@pytest.mark.parametrize(
    ("name", "rows", "features", "classes", "image"),
    [
        ("digits", 1797, 64, 10, (1, 8, 8)),
        ("iris", 150, 4, 3, None),
        ("wine", 178, 13, 3, None),
        ("breast_cancer", 569, 30, 2, None),
    ],
)
def test_builtin_sets_load(name: str, rows: int, features: int, classes: int,
                           image: tuple[int, ...] | None) -> None:
    ds = load_dataset(DataConfig(dataset=name))
    assert ds.x.shape == (rows, features)
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int64
    assert len(ds.y) == rows
    assert len(ds.class_names) == classes
    assert set(np.unique(ds.y).tolist()) == set(range(classes))
    assert len(ds.feature_names) == features
    assert ds.image_shape == image
    assert ds.name == name
    assert len(ds.content_hash) == 64


def test_builtin_hash_is_stable() -> None:
    a = load_dataset(DataConfig(dataset="iris"))
    b = load_dataset(DataConfig(dataset="iris"))
    c = load_dataset(DataConfig(dataset="wine"))
    assert a.content_hash == b.content_hash != c.content_hash


# --------------------------------------------------------------------------- CSV and Parquet files


def test_csv_with_string_labels(tmp_path: Path) -> None:
    p = tmp_path / "animals.csv"
    labelled_frame().to_csv(p, index=False)
    ds = load_dataset(csv_cfg(p))
    assert ds.x.shape == (90, 3)
    assert ds.feature_names == ["f1", "f2", "count"]
    assert ds.class_names == ["cat", "dog", "emu"]
    np.testing.assert_array_equal(ds.y, np.arange(90) % 3)
    assert ds.name == str(p)
    assert ds.image_shape is None
    assert ds.content_hash == file_digest(p)


def test_parquet_with_string_labels(tmp_path: Path) -> None:
    p = tmp_path / "animals.parquet"
    frame = labelled_frame()
    frame.to_parquet(p)
    ds = load_dataset(csv_cfg(p))
    assert ds.x.shape == (90, 3)
    assert ds.class_names == ["cat", "dog", "emu"]
    np.testing.assert_array_equal(ds.y, np.arange(90) % 3)
    np.testing.assert_allclose(ds.x[:, 0], frame["f1"].to_numpy(), rtol=1e-6)


def test_content_hash_changes_with_the_file(tmp_path: Path) -> None:
    p = tmp_path / "animals.csv"
    frame = labelled_frame()
    frame.to_csv(p, index=False)
    first = load_dataset(csv_cfg(p)).content_hash
    assert load_dataset(csv_cfg(p)).content_hash == first
    frame.loc[0, "f1"] += 1.0
    frame.to_csv(p, index=False)
    second = load_dataset(csv_cfg(p)).content_hash
    assert second != first
    assert second == file_digest(p)


def test_data_error_is_user_input_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError):
        load_dataset(csv_cfg(tmp_path / "absent.csv"))


# --------------------------------------------------------------------------- not a readable table


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.csv"
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and "not found" in msg


def test_relative_missing_path_names_the_working_directory(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    msg = data_error(csv_cfg(Path("sub/nope.csv")))
    assert "'sub/nope.csv'" in msg and str(tmp_path) in msg and "working directory" in msg


def test_directory_instead_of_file(tmp_path: Path) -> None:
    d = tmp_path / "dir.csv"
    d.mkdir()
    assert str(d) in data_error(csv_cfg(d))


def test_directory_message(tmp_path: Path) -> None:
    d = tmp_path / "folder.csv"
    d.mkdir()
    assert "is a directory" in data_error(csv_cfg(d))


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.csv"
    p.write_bytes(b"")
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and "empty" in msg


def test_blank_lines_only(tmp_path: Path) -> None:
    p = tmp_path / "blank.csv"
    p.write_text("\n\n\n")
    assert str(p) in data_error(csv_cfg(p))


def test_binary_garbage_named_csv(tmp_path: Path) -> None:
    p = tmp_path / "garbage.csv"
    p.write_bytes(bytes(range(256)) * 40)
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and "binary" in msg


def test_non_utf8_garbage_named_csv(tmp_path: Path) -> None:
    p = tmp_path / "latin.csv"
    p.write_bytes(b"\xff\xfe\xfa\xc3(" * 200)
    assert str(p) in data_error(csv_cfg(p))


def test_latin1_file_says_utf8(tmp_path: Path) -> None:
    p = tmp_path / "latin.csv"
    p.write_bytes("a,café,label\n1,2,x\n".encode("latin-1"))
    assert "UTF-8" in data_error(csv_cfg(p))


def test_corrupt_parquet(tmp_path: Path) -> None:
    p = tmp_path / "broken.parquet"
    p.write_bytes(b"PAR1 this is not really parquet")
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and "Parquet" in msg


@pytest.mark.parametrize("suffix", [".xlsx", ".json", ".npy"])
def test_unsupported_extension(tmp_path: Path, suffix: str) -> None:
    p = tmp_path / f"data{suffix}"
    p.write_text("f1,label\n1,a\n")
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and suffix in msg


def test_xlsx_says_save_as_csv(tmp_path: Path) -> None:
    p = tmp_path / "book.xlsx"
    p.write_bytes(b"PK\x03\x04 not really")
    assert "save it as CSV" in data_error(csv_cfg(p))


# --------------------------------------------------------------------------- the header line


def test_duplicate_column_names(tmp_path: Path) -> None:
    p = tmp_path / "dupe.csv"
    p.write_text("a,b,a,label\n" + "".join(f"{i},{i},{i},{'xy'[i % 2]}\n" for i in range(20)))
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and "duplicate" in msg and "a" in msg


@pytest.mark.parametrize(("sep", "word"), [(";", "';'"), ("\t", "tabs")])
def test_other_separator_is_named(tmp_path: Path, sep: str, word: str) -> None:
    p = tmp_path / "semi.csv"
    labelled_frame().to_csv(p, index=False, sep=sep, decimal=",")
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and f"separated by {word}" in msg


def test_a_header_without_a_line_break_is_read_only_so_far(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read, "MAX_HEADER_BYTES", 1 << 16)  # the real bound is 8 MiB
    p = tmp_path / "one_line.csv.gz"
    pd.DataFrame({"x" * 200_000: []}).to_csv(p, index=False, lineterminator="")
    assert "no line break in the first 65,536 bytes" in data_error(csv_cfg(p))


def test_an_overlong_column_name_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "long.csv"
    p.write_text("a" * 5000 + ",label\n1,x\n")
    msg = data_error(csv_cfg(p))
    assert "column 1's name is 5,000 characters (at most 1,000)" in msg and len(msg) < 300


def test_messages_about_names_stay_short(tmp_path: Path) -> None:
    p = tmp_path / "many.csv"
    names = [f"col{i}_{'n' * 100}" for i in range(50)] * 2 + ["label"]
    p.write_text(",".join(names) + "\n" + ",".join(["1"] * 100 + ["a"]) + "\n")
    msg = data_error(csv_cfg(p))
    assert "duplicate column names" in msg and "(and 45 more)" in msg and len(msg) < 400
    labelled_frame().to_csv(tmp_path / "ok.csv", index=False)
    msg = data_error(csv_cfg(tmp_path / "ok.csv", target="t" * 1_000_000))
    assert "target column 'tttt" in msg and "(1,000,000 characters)" in msg and len(msg) < 300


# --------------------------------------------------------------------------- compressed CSV


COMPRESSED = ["gz", "bz2", "xz", "zst", "zip"]


def same_dataset(a: Dataset, b: Dataset) -> None:
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert (a.feature_names, a.class_names) == (b.feature_names, b.class_names)


@pytest.mark.parametrize("ext", COMPRESSED)
def test_compressed_csv_loads_the_same_dataset_as_plain(tmp_path: Path, ext: str) -> None:
    frame = labelled_frame()
    frame.to_csv(tmp_path / "plain.csv", index=False)
    packed = tmp_path / f"data.csv.{ext}"
    frame.to_csv(packed, index=False)  # pandas infers the compression from the name
    assert packed.read_bytes()[:64] != (tmp_path / "plain.csv").read_bytes()[:64]
    same_dataset(load_dataset(csv_cfg(packed)), load_dataset(csv_cfg(tmp_path / "plain.csv")))


@pytest.mark.parametrize("ext", COMPRESSED)
def test_checks_read_the_decompressed_text(tmp_path: Path, ext: str) -> None:
    # the duplicate-header and separator checks see the CSV inside, not the compressed bytes
    frame = labelled_frame()
    frame.to_csv(tmp_path / f"semi.csv.{ext}", index=False, sep=";")
    assert "separated by ';'" in data_error(csv_cfg(tmp_path / f"semi.csv.{ext}"))
    frame.columns = ["f1", "f1", "count", "label"]
    frame.to_csv(tmp_path / f"dupes.csv.{ext}", index=False)
    assert "duplicate column names f1" in data_error(csv_cfg(tmp_path / f"dupes.csv.{ext}"))


def test_corrupt_gzip_is_one_line_naming_the_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv.gz"
    p.write_bytes(b"f1,label\n1,a\n")  # plain text with a .gz name
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and "corrupt or truncated gzip file" in msg


@pytest.mark.parametrize("rows", [30, 30_000])  # cut inside the header, or past the part sniffed
def test_truncated_gzip_is_one_line(tmp_path: Path, rows: int) -> None:
    whole = tmp_path / "whole.csv.gz"
    pd.concat([labelled_frame()] * (rows // 30 or 1)).to_csv(whole, index=False)
    p = tmp_path / "cut.csv.gz"
    p.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    msg = data_error(csv_cfg(p))
    assert str(p) in msg and "corrupt or truncated gzip file" in msg


@pytest.mark.parametrize("ext", ["bz2", "xz", "zst", "zip"])
def test_other_corrupt_compressions_are_one_line(tmp_path: Path, ext: str) -> None:
    p = tmp_path / f"bad.csv.{ext}"
    p.write_bytes(b"not compressed at all\n" * 10)
    assert f"data file {str(p)!r}: a corrupt or truncated" in data_error(csv_cfg(p))


def test_gzip_of_binary_garbage_is_binary_content(tmp_path: Path) -> None:
    import gzip

    p = tmp_path / "garbage.csv.gz"
    p.write_bytes(gzip.compress(np.random.default_rng(0).bytes(5000) + b"\x00" * 64))
    assert "binary content" in data_error(csv_cfg(p))


def test_zip_of_two_files_is_refused(tmp_path: Path) -> None:
    import zipfile

    p = tmp_path / "two.csv.zip"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("a.csv", "f1,label\n1,a\n")
        zf.writestr("b.csv", "f1,label\n1,a\n")
    assert "a zip archive of 2 files" in data_error(csv_cfg(p))


@pytest.mark.parametrize("name", ["data.gz", "data.parquet.gz", "data.tar.gz"])
def test_compressed_non_csv_is_unsupported(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    p.write_bytes(b"\x1f\x8b not read")
    msg = data_error(csv_cfg(p))
    assert "unsupported format" in msg and ".csv.gz" in msg


@pytest.mark.parametrize("ext", ["", ".gz"])
def test_unicode_file_and_column_names(tmp_path: Path, ext: str) -> None:
    frame = labelled_frame().rename(columns={"f1": "größe", "f2": "長さ", "label": "étiquette"})
    p = tmp_path / f"données_データ.csv{ext}"
    frame.to_csv(p, index=False)
    ds = load_dataset(csv_cfg(p, target="étiquette"))
    assert ds.feature_names == ["größe", "長さ", "count"] and ds.class_names == ["cat", "dog", "emu"]
    assert "did you mean 'étiquette'" in data_error(csv_cfg(p, target="etiquette"))
