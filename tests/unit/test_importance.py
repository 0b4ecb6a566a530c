"""Hyperparameter importance on constructed trial tables (no search is run)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from paramaudit.importance import importance_table, plot_importance, rank_hyperparameters

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def lr_decides(n: int = 40, seed: int = 0) -> pd.DataFrame:
    """learning_rate decides the score (a bowl around 10**-2.5); dropout and optimizer are noise."""
    rng = np.random.default_rng(seed)
    lr = 10 ** rng.uniform(-4, -1, n)
    return pd.DataFrame({
        "learning_rate": lr,
        "dropout": rng.uniform(0.0, 0.5, n),
        "optimizer": rng.choice(["adam", "sgd"], n),
        "val_score": (np.log10(lr) + 2.5) ** 2 + rng.normal(0.0, 0.01, n),
    })


def optimizer_decides(n: int = 40, seed: int = 1) -> pd.DataFrame:
    """A categorical decides the score; the numeric hyperparameters are noise."""
    rng = np.random.default_rng(seed)
    opt = rng.choice(["adam", "sgd", "rmsprop"], n)
    effect = {"adam": 0.2, "sgd": 0.9, "rmsprop": 0.5}
    return pd.DataFrame({
        "optimizer": opt,
        "learning_rate": 10 ** rng.uniform(-4, -1, n),
        "hidden_size": rng.choice([32, 64, 128, 256], n),
        "val_score": np.array([effect[o] for o in opt]) + rng.normal(0.0, 0.01, n),
    })


def kinds_of(r: pd.DataFrame) -> dict[str, str]:
    return dict(zip(r["hyperparameter"], r["kind"], strict=True))


def check_shape(r: pd.DataFrame) -> None:
    assert list(r.columns) == ["rank", "hyperparameter", "importance", "method", "n_trials", "kind"]
    ranked = r[r["rank"].notna()]
    assert (r["importance"] >= 0).all()
    assert math.isclose(ranked["importance"].sum(), 1.0, rel_tol=1e-9)
    assert list(r["importance"]) == sorted(r["importance"], reverse=True)
    assert list(ranked["rank"]) == list(range(1, len(ranked) + 1))
    assert r["method"].nunique() == 1


@pytest.mark.parametrize("method", ["fanova", "forest"])
def test_the_deciding_hyperparameter_ranks_first(method: str) -> None:
    r = rank_hyperparameters(lr_decides(), method=method, seed=0)
    check_shape(r)
    assert r["hyperparameter"].iloc[0] == "learning_rate"
    top, second = r["importance"].iloc[0], r["importance"].iloc[1]
    assert top > 0.6 and top > 3 * second
    assert set(r["hyperparameter"]) == {"learning_rate", "dropout", "optimizer"}
    assert (r["method"] == method).all()
    assert (r["n_trials"] == 40).all()
    kinds = kinds_of(r)
    assert kinds == {"learning_rate": "log-float", "dropout": "float", "optimizer": "categorical"}


@pytest.mark.parametrize("method", ["fanova", "forest"])
def test_a_deciding_categorical_ranks_first(method: str) -> None:
    r = rank_hyperparameters(optimizer_decides(), method=method, seed=0)
    check_shape(r)
    assert r["hyperparameter"].iloc[0] == "optimizer"
    assert r["importance"].iloc[0] > 0.6
    assert kinds_of(r)["hidden_size"] == "int"  # 32..256: under 2 decades


def test_auto_prefers_fanova_and_falls_back_to_the_forest() -> None:
    r = rank_hyperparameters(lr_decides(), method="auto")
    assert (r["method"] == "fanova").all() and r.attrs["fallback"] is None
    # a single varying hyperparameter: auto uses the forest and says why
    one = lr_decides()[["learning_rate", "val_score"]]
    r1 = rank_hyperparameters(one, method="auto")
    assert (r1["method"] == "forest").all()
    assert r1["importance"].tolist() == [1.0]
    assert "fewer than 2" in r1.attrs["fallback"]
    # three trials are enough to rank, not enough for fanova under auto
    r3 = rank_hyperparameters(lr_decides(n=3), method="auto")
    assert (r3["method"] == "forest").all() and (r3["n_trials"] == 3).all()


def test_auto_falls_back_when_fanova_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    import paramaudit.importance as importance

    def broken(*args: object, **kwargs: object) -> dict[str, float]:
        raise RuntimeError("boom")

    monkeypatch.setattr(importance, "_fanova", broken)
    r = rank_hyperparameters(lr_decides(), method="auto")
    assert (r["method"] == "forest").all()
    assert r.attrs["fallback"] == "fanova failed: RuntimeError: boom"
    with pytest.raises(ValueError, match="cannot rank hyperparameters: fanova failed: RuntimeError: boom"):
        rank_hyperparameters(lr_decides(), method="fanova")


@pytest.mark.parametrize("method", ["fanova", "forest"])
def test_constant_columns_are_not_ranked(method: str) -> None:
    t = lr_decides()
    t["batch_size"] = 64
    t["activation"] = "relu"
    t["use_bn"] = True
    r = rank_hyperparameters(t, method=method)
    check_shape(r)
    assert r["hyperparameter"].iloc[0] == "learning_rate"
    const = r[r["kind"] == "constant"]
    assert set(const["hyperparameter"]) == {"batch_size", "activation", "use_bn"}
    assert (const["importance"] == 0.0).all() and const["rank"].isna().all()
    assert sorted(r.attrs["constant"]) == ["activation", "batch_size", "use_bn"]
    # they sit below every ranked hyperparameter
    assert list(r["kind"].iloc[-3:]) == ["constant"] * 3


def test_non_finite_scores_are_dropped() -> None:
    t = lr_decides()
    t.loc[[0, 5, 9], "val_score"] = np.nan
    t.loc[11, "val_score"] = np.inf
    t.loc[12, "val_score"] = -np.inf
    r = rank_hyperparameters(t, method="forest")
    assert (r["n_trials"] == 35).all()
    assert r.attrs["dropped_trials"] == 5
    assert r["hyperparameter"].iloc[0] == "learning_rate"
    # a column that only varies among dropped trials counts as constant
    t["weight_decay"] = 1e-4
    t.loc[0, "weight_decay"] = 1e-2
    r2 = rank_hyperparameters(t, method="forest")
    assert kinds_of(r2)["weight_decay"] == "constant"


def test_too_few_trials_raise_a_one_line_value_error() -> None:
    t = lr_decides(n=6)
    t.loc[[0, 1, 2, 3], "val_score"] = np.nan
    with pytest.raises(ValueError, match=r"2 trial\(s\) with a finite 'val_score'") as info:
        rank_hyperparameters(t)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="at least 3 needed"):
        rank_hyperparameters(t.iloc[:0])


def test_other_impossible_rankings_raise_value_error() -> None:
    t = lr_decides(n=10)
    with pytest.raises(ValueError, match="not in the trial table"):
        rank_hyperparameters(t, score="val_accuracy")
    with pytest.raises(ValueError, match="unknown importance method"):
        rank_hyperparameters(t, method="shap")
    flat = t.assign(learning_rate=1e-3, dropout=0.1, optimizer="adam")
    with pytest.raises(ValueError, match="none varies"):
        rank_hyperparameters(flat)
    with pytest.raises(ValueError, match="is the same in all 10"):
        rank_hyperparameters(t.assign(val_score=0.5))


@pytest.mark.parametrize("method", ["fanova", "forest"])
def test_deterministic_with_the_same_seed(method: str) -> None:
    t = lr_decides(n=25, seed=3)
    a = rank_hyperparameters(t, method=method, seed=7)
    b = rank_hyperparameters(t, method=method, seed=7)
    pd.testing.assert_frame_equal(a, b)


def test_higher_is_better_does_not_change_the_ranking() -> None:
    t = lr_decides(n=30)
    lo = rank_hyperparameters(t, method="fanova", higher_is_better=False)
    hi = rank_hyperparameters(t, method="fanova", higher_is_better=True)
    assert lo["hyperparameter"].tolist() == hi["hyperparameter"].tolist()


def test_mixed_types_missing_values_and_bools() -> None:
    rng = np.random.default_rng(5)
    n = 30
    lr = 10 ** rng.uniform(-4, -1, n)
    t = pd.DataFrame({
        "learning_rate": lr,
        "scaler": rng.choice(["standard", "minmax", None], n),  # None: a category of its own
        "use_bn": rng.choice([True, False], n),
        "num_layers": rng.integers(1, 5, n).astype(float),  # whole floats count as integers
        "val_score": np.log10(lr) + rng.normal(0.0, 0.01, n),
    })
    t.loc[3, "num_layers"] = np.nan  # imputed (median), the trial is kept
    r = rank_hyperparameters(t, method="auto")
    check_shape(r)
    kinds = kinds_of(r)
    assert kinds == {"learning_rate": "log-float", "scaler": "categorical", "use_bn": "categorical",
                     "num_layers": "int"}
    assert r["hyperparameter"].iloc[0] == "learning_rate"
    assert (r["n_trials"] == n).all()


def test_importance_table_is_json_ready() -> None:
    t = lr_decides()
    t["batch_size"] = 32
    r = rank_hyperparameters(t, method="fanova")
    rows = importance_table(r)
    json.dumps(rows)  # no numpy scalars, no pd.NA
    assert rows[0]["hyperparameter"] == "learning_rate" and rows[0]["rank"] == 1
    assert set(rows[0]) == {"rank", "hyperparameter", "importance", "method", "n_trials", "kind"}
    assert all(isinstance(row["importance"], float) for row in rows)
    assert all(row["importance"] == round(row["importance"], 4) for row in rows)
    assert rows[-1]["hyperparameter"] == "batch_size" and rows[-1]["rank"] is None
    assert isinstance(rows[0]["n_trials"], int)


def test_plot_writes_a_png_with_categorical_log_and_many_columns(tmp_path) -> None:
    rng = np.random.default_rng(2)
    t = optimizer_decides(n=30)  # categorical decides; learning_rate is log-distributed
    for i in range(6):  # 10 ranked hyperparameters: more than the 8 scatters shown
        t[f"noise{i}"] = rng.uniform(0.0, 1.0, len(t))
    t["use_bn"] = rng.choice([True, False], len(t))
    t["batch_size"] = 64  # constant: a zero bar, no scatter
    t.loc[0, "val_score"] = np.nan  # left out of every scatter
    r = rank_hyperparameters(t, method="forest")
    assert r["hyperparameter"].iloc[0] == "optimizer"
    out = plot_importance(t, r, tmp_path / "sub" / "importance.png")
    assert out == tmp_path / "sub" / "importance.png"
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000


def test_plot_a_single_hyperparameter_and_a_custom_score(tmp_path) -> None:
    t = lr_decides(n=12)[["learning_rate", "val_score"]].rename(columns={"val_score": "acc"})
    r = rank_hyperparameters(t, score="acc", higher_is_better=True)
    out = plot_importance(t, r, str(tmp_path / "one.png"), score="acc")
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_importing_the_module_loads_no_heavy_dependency() -> None:
    code = (
        "import sys, paramaudit.importance; "
        "heavy = ('matplotlib', 'optuna', 'sklearn', 'torch', 'ray', 'prefect', 'mlflow'); "
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
