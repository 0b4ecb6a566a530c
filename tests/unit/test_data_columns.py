"""Column kinds, overrides, drops and the columns report (paramaudit.data.columns)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.tables import csv_cfg, data_error, labelled_frame, messy_frame

from paramaudit.config import PipelineConfig, build_config
from paramaudit.data import Splits, columns_report_markdown, load_and_split, load_dataset
from paramaudit.data.read import Dataset
from paramaudit.errors import ConfigError

REPORT_KEYS = {"column", "kind", "missing_share", "distinct", "action", "reason"}


def messy(tmp_path: Path, frame: pd.DataFrame | None = None, **kw: object) -> Dataset:
    p = tmp_path / "messy.csv"
    (messy_frame() if frame is None else frame).to_csv(p, index=False)
    return load_dataset(csv_cfg(p, target="churn", **kw))


def rows(ds_or_splits: Dataset | Splits) -> dict[str, dict]:
    return {r["column"]: r for r in ds_or_splits.columns_report}


# --------------------------------------------------------------------------- inferred kinds


def test_a_messy_table_loads_on_defaults(tmp_path: Path) -> None:
    ds = messy(tmp_path)
    kinds = {c: r["kind"] for c, r in rows(ds).items()}
    assert kinds == {"customer_id": "identifier", "age": "numeric", "income": "numeric",
                     "plan": "categorical", "region": "categorical", "country": "constant",
                     "signup": "datetime", "notes": "free text", "children": "numeric",
                     "churn": "target"}
    assert ds.feature_names == ["age", "income", "signup (year)", "signup (month)", "signup (day)",
                                "signup (dayofweek)", "children"]
    assert ds.feature_sources == ["age", "income"] + ["signup"] * 4 + ["children"]
    assert ds.categorical_columns == ["plan", "region"]
    assert ds.class_names == ["no", "yes"]  # a yes/no target keeps its own strings
    assert ds.x.dtype == np.float32 and ds.x.shape == (300, 7)
    r = rows(ds)
    assert r["notes"]["action"] == "dropped" and r["notes"]["reason"] == "free text (not supported yet)"
    assert r["country"]["action"] == "dropped" and "'NZ'" in r["country"]["reason"]
    assert r["age"]["missing_share"] == 0.1 and "'?' read as missing" in r["age"]["reason"]
    assert r["signup"]["action"] == "expanded: year, month, day, dayofweek"
    assert all(set(row) == REPORT_KEYS for row in ds.columns_report)
    assert [row["column"] for row in ds.columns_report] == list(messy_frame().columns)


def test_the_report_after_the_split_says_what_preprocessing_did(tmp_path: Path) -> None:
    p = tmp_path / "messy.csv"
    messy_frame().to_csv(p, index=False)
    s = load_and_split(PipelineConfig(data=csv_cfg(p, target="churn")))
    r = rows(s)
    assert r["age"]["action"] == "imputed (median) + indicator"
    assert r["income"]["action"] == r["children"]["action"] == "scaled"
    assert r["plan"]["action"] == "one-hot (3)"
    assert r["region"]["action"].startswith("one-hot (")
    assert r["signup"]["action"] == "expanded: year, month, day, dayofweek; imputed (median) + indicator"
    assert r["customer_id"]["action"] == "dropped"
    assert s.row_counts == {"read": 300, "dropped_missing_target": 0, **s.sizes()}
    # one indicator for the four parts of the date, one for age
    assert s.input_names()[-2:] == ["age (missing)", "signup (missing)"]
    assert s.n_features == len(s.input_names()) == len(s.feature_names) + 2
    assert not np.isnan(s.x_train).any() and not np.isnan(s.x_test).any()
    md = columns_report_markdown(s.columns_report)
    assert md.startswith("| column | kind | missing | distinct | action | reason |\n|---|")
    assert "| age | numeric | 10.0% | " in md and md.count("\n") == 2 + len(s.columns_report)


def test_markdown_escapes_pipes() -> None:
    md = columns_report_markdown([{"column": "a|b", "kind": "numeric", "missing_share": 0.25,
                                   "distinct": 3, "action": "scaled", "reason": "numbers"}])
    assert "| a\\|b | numeric | 25.0% | 3 | scaled | numbers |" in md


def test_integers_nearly_all_distinct(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = labelled_frame(90)
    frame["row"] = rng.permutation(90)  # consecutive: an identifier whatever its name
    frame["OrderId"] = rng.choice(10**6, 90, replace=False)  # scattered, but named as an id
    frame["area"] = rng.choice(10**6, 90, replace=False)  # scattered measurement: a feature
    ds = messy(tmp_path, frame.rename(columns={"label": "churn"}))
    kinds = {c: r["kind"] for c, r in rows(ds).items()}
    assert kinds["row"] == kinds["OrderId"] == "identifier" and kinds["area"] == "numeric"
    assert kinds["count"] == "numeric"  # small integers keep their order


def test_text_identifier_and_small_tables(tmp_path: Path) -> None:
    frame = labelled_frame(90).rename(columns={"label": "churn"})
    frame["code"] = [f"C{i:04d}" for i in range(90)]
    assert rows(messy(tmp_path, frame))["code"]["kind"] == "identifier"
    few = frame.iloc[:18].copy()  # 18 distinct values prove nothing: a category
    few["churn"] = ["a", "b", "c"] * 6
    assert rows(messy(tmp_path, few))["code"]["kind"] == "categorical"


def test_all_missing_and_constant_columns_are_dropped(tmp_path: Path) -> None:
    frame = labelled_frame(90).rename(columns={"label": "churn"})
    frame["empty"] = np.nan
    frame["same"] = 7
    frame["some"] = np.where(np.arange(90) % 4 == 0, "yes", None)  # one value and gaps: kept
    r = rows(messy(tmp_path, frame))
    assert (r["empty"]["kind"], r["empty"]["action"], r["empty"]["missing_share"]) == (
        "all missing", "dropped", 1.0)
    assert (r["same"]["kind"], r["same"]["action"]) == ("constant", "dropped")
    assert r["some"]["kind"] == "categorical"


def test_dates_with_times_get_an_hour(tmp_path: Path) -> None:
    frame = labelled_frame(90).rename(columns={"label": "churn"})
    frame["at"] = pd.date_range("2024-03-01 08:15", periods=90, freq="5h").strftime("%d/%m/%Y %H:%M")
    ds = messy(tmp_path, frame)
    assert ds.feature_names[-5:] == ["at (year)", "at (month)", "at (day)", "at (dayofweek)",
                                     "at (hour)"]
    first = pd.Timestamp("2024-03-01 08:15")
    np.testing.assert_array_equal(ds.x[0, -5:], [2024, 3, 1, first.dayofweek, 8])
    assert rows(ds)["at"]["action"] == "expanded: year, month, day, dayofweek, hour"


def test_parquet_dtypes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 90
    frame = pd.DataFrame({
        "n": pd.array(rng.integers(0, 5, n), dtype="Int64"),
        "flag": pd.array(rng.choice([True, False], n), dtype="boolean"),
        "kind": pd.Categorical(rng.choice(["a", "b"], n)),
        "when": pd.date_range("2021-01-01", periods=n, freq="D"),
        "churn": np.arange(n) % 2 == 0,  # a boolean target
    })
    frame.loc[3, "n"] = pd.NA
    frame.loc[4, "flag"] = pd.NA
    frame.loc[5, "when"] = pd.NaT
    p = tmp_path / "t.parquet"
    frame.to_parquet(p)
    ds = load_dataset(csv_cfg(p, target="churn"))
    kinds = {c: r["kind"] for c, r in rows(ds).items()}
    assert kinds == {"n": "numeric", "flag": "categorical", "kind": "categorical",
                     "when": "datetime", "churn": "target"}
    assert ds.class_names == ["False", "True"]
    assert set(ds.categorical["flag"]) == {"True", "False", "(missing)"}
    assert np.isnan(ds.x[3, 0]) and np.isnan(ds.x[5, 1:5]).all()


# --------------------------------------------------------------------------- overrides and drop


def test_columns_overrides_every_kind(tmp_path: Path) -> None:
    frame = messy_frame()
    frame["zip"] = np.random.default_rng(1).choice([1010, 2020, 3030], len(frame))
    ds = messy(tmp_path, frame, columns={"zip": "categorical", "customer_id": "numeric",
                                         "children": "drop", "plan": "identifier",
                                         "signup": "datetime"})
    r = rows(ds)
    assert (r["zip"]["kind"], r["zip"]["reason"]) == ("categorical", "data.columns")
    assert set(ds.categorical["zip"]) == {"1010", "2020", "3030"}
    assert "customer_id" in ds.feature_names and "children" not in ds.feature_names
    assert (r["children"]["kind"], r["children"]["action"]) == ("drop", "dropped")
    assert (r["plan"]["kind"], r["plan"]["action"]) == ("identifier", "dropped")
    assert ds.categorical_columns == ["region", "zip"]


def test_drop_leaves_columns_out(tmp_path: Path) -> None:
    ds = messy(tmp_path, drop=["income", "plan"])
    assert "income" not in ds.feature_names and ds.categorical_columns == ["region"]
    r = rows(ds)
    assert (r["income"]["action"], r["income"]["reason"]) == ("dropped", "data.drop")
    assert (r["plan"]["action"], r["plan"]["reason"]) == ("dropped", "data.drop")
    cfg = build_config({"data": {"path": "x.csv", "target": "y", "drop": "id"}})
    assert cfg.data.drop == ["id"]  # one column needs no list


def test_unknown_columns_suggest_the_name(tmp_path: Path) -> None:
    p = tmp_path / "messy.csv"
    messy_frame().to_csv(p, index=False)
    msg = data_error(csv_cfg(p, target="churn", columns={"regoin": "categorical"}))
    assert msg.startswith("config: data.columns: no column 'regoin'") and "did you mean 'region'" in msg
    msg = data_error(csv_cfg(p, target="churn", drop=["incme"]))
    assert msg.startswith("config: data.drop: no column 'incme'") and "did you mean 'income'" in msg
    msg = data_error(csv_cfg(p, target="churn", drop=["churn"]))
    assert "'churn' is the target column" in msg


def test_columns_and_drop_need_a_file() -> None:
    with pytest.raises(ConfigError) as info:
        build_config({"data": {"dataset": "iris", "drop": ["petal width (cm)"]}})
    assert "name columns of a data file" in str(info.value)


def test_impossible_overrides(tmp_path: Path) -> None:
    p = tmp_path / "messy.csv"
    messy_frame().to_csv(p, index=False)
    msg = data_error(csv_cfg(p, target="churn", columns={"plan": "numeric"}))
    assert "'plan'" in msg and "none of its values is a number" in msg
    msg = data_error(csv_cfg(p, target="churn", columns={"plan": "datetime"}))
    assert "none of its values parses as a date" in msg
    msg = data_error(csv_cfg(p, target="churn", columns={"income": "datetime"}))
    assert "holds numbers, not dates" in msg


def test_nothing_usable_left(tmp_path: Path) -> None:
    p = tmp_path / "useless.csv"
    n = 60
    pd.DataFrame({"id": np.arange(n), "c": 1, "notes": [f"a long remark number {i} about this row"
                                                         for i in range(n)],
                  "label": ["a", "b"] * (n // 2)}).to_csv(p, index=False)
    msg = data_error(csv_cfg(p))
    assert "no usable feature column left" in msg
    assert "'id' (identifier)" in msg and "'c' (constant)" in msg and "'notes' (free text)" in msg
    assert len(msg) < 300
    msg = data_error(csv_cfg(p, columns={"c": "drop"}, drop=["id"]))
    assert "'id' (data.drop)" in msg and "'c' (data.columns)" in msg
