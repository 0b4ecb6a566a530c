"""The served predictor: raw rows in, the target's own labels out, exactly as training read them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from paramaudit.config import build_config
from paramaudit.data import load_and_split
from paramaudit.data.read import read_table
from paramaudit.errors import DataError
from paramaudit.final_model import train_best
from paramaudit.serving.predictor import Predictor

HP = {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 64, "num_layers": 1,
      "hidden_size": 16}
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def messy_table(n: int = 400, seed: int = 0, labels: tuple[Any, ...] = ("cat", "dog", "émeu")
                ) -> pd.DataFrame:
    """Gaps, text categories, a date, an ID, booleans and string labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(labels), n)
    size = rng.normal(size=n) + y
    size[rng.random(n) < 0.1] = np.nan
    colour = np.array(["red", "green", "blue", "vert"], dtype=object)[(y + rng.integers(0, 2, n)) % 4]
    colour[rng.random(n) < 0.05] = None
    return pd.DataFrame({
        "customer_id": np.arange(1000, 1000 + n),
        "size": size,
        "legs": (y * 2 + rng.integers(0, 2, n)).astype(np.int64),
        "colour": colour,
        "indoor": rng.random(n) < 0.3 + 0.2 * y,
        "seen": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 700, n), unit="D"),
        "label": np.asarray(labels, dtype=object)[y],
    })


def fitted(tmp_path: Path, frame: pd.DataFrame, target: str = "label", epochs: int = 5
           ) -> tuple[Predictor, Any, pd.DataFrame]:
    path = tmp_path / "table.csv.gz"
    frame.to_csv(path, index=False)
    cfg = build_config({"data": {"path": str(path), "target": target}})
    splits = load_and_split(cfg)
    final = train_best(splits, "mlp", HP, max_epochs=epochs, patience=epochs, seed=0)
    raw = read_table(path, exact={target})
    return Predictor.of(final, splits), splits, raw


def test_raw_test_rows_give_exactly_the_training_features(tmp_path: Path) -> None:
    predictor, splits, raw = fitted(tmp_path, messy_table())
    assert "customer_id" not in predictor.columns  # an identifier is not an input
    rows = raw.iloc[splits.test_row_ids].drop(columns=["label"])
    np.testing.assert_array_equal(predictor.features(rows), splits.x_test)
    out = predictor.predict(rows)
    assert list(out.columns) == ["prediction", "proba_cat", "proba_dog", "proba_émeu"]
    assert set(out["prediction"]) <= {"cat", "dog", "émeu"}
    np.testing.assert_allclose(out.filter(like="proba_").sum(axis=1), 1.0, atol=1e-6)
    # the same answers as the network on the preprocessed rows
    with torch.no_grad():
        logits = predictor.model(torch.from_numpy(splits.x_test)).numpy()
    labels = np.array(["cat", "dog", "émeu"], dtype=object)[logits.argmax(axis=1)]
    assert list(out["prediction"]) == list(labels)


def test_gaps_unseen_categories_and_extra_columns_are_answered(tmp_path: Path) -> None:
    predictor, _, _ = fitted(tmp_path, messy_table())
    rows = pd.DataFrame({
        "size": [np.nan, 1.0, "n/a"], "legs": [np.nan, 4, 2], "colour": ["purple", None, "red"],
        "indoor": [True, None, False], "seen": ["2024-03-05", "not a date", None],
        "something else": [1, 2, 3],
    })
    out = predictor.predict(rows)
    assert len(out) == 3 and np.isfinite(out.filter(like="proba_").to_numpy()).all()
    assert out.index.tolist() == rows.index.tolist()


def test_a_missing_column_is_one_line_naming_it(tmp_path: Path) -> None:
    predictor, _, raw = fitted(tmp_path, messy_table())
    with pytest.raises(DataError, match=r"missing column 'colour'") as err:
        predictor.predict(raw.drop(columns=["colour"]), shown="data file 'new.csv'")
    assert "\n" not in str(err.value) and str(err.value).startswith("data file 'new.csv'")


def test_integer_labels_stay_integers_and_a_pickle_answers_the_same(tmp_path: Path) -> None:
    predictor, splits, raw = fitted(tmp_path, messy_table(labels=(3, 5, 7)))
    rows = raw.iloc[splits.test_row_ids]
    out = predictor.predict(rows)
    assert pd.api.types.is_integer_dtype(out["prediction"]) and set(out["prediction"]) <= {3, 5, 7}
    torch.save(predictor, tmp_path / "p.pt")
    again = torch.load(tmp_path / "p.pt", weights_only=False)
    pd.testing.assert_frame_equal(again.predict(rows), out)


def test_a_regression_answers_in_the_targets_units(tmp_path: Path) -> None:
    cfg = build_config({"data": {"dataset": "diabetes"}})
    splits = load_and_split(cfg)
    final = train_best(splits, "mlp", HP, max_epochs=20, patience=20, seed=0)
    predictor = Predictor.of(final, splits)
    rows = pd.DataFrame(splits.raw_test, columns=predictor.columns)
    out = predictor.predict(rows)
    assert list(out.columns) == ["prediction"]
    with torch.no_grad():
        expected = final.served_model()(torch.from_numpy(splits.x_test)).numpy().ravel()
    np.testing.assert_allclose(out["prediction"].to_numpy(), expected, rtol=1e-5)
    assert 25 < out["prediction"].mean() < 350  # disease progression, not a standardised score
