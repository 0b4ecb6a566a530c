"""Regression end to end, in small pieces: the task, the data, training, metrics, rules, trials."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from support.tables import csv_cfg

from paramaudit.config import (
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    OverfitConfig,
    PipelineConfig,
    build_config,
    resolve_hyperparameters,
)
from paramaudit.data import load_and_split, load_dataset
from paramaudit.data.checks import check_inputs, resolve_task
from paramaudit.errors import ConfigError, DataError
from paramaudit.metrics import (
    TASK_METRICS,
    TargetScaler,
    compare_to_baseline,
    epoch_regression_scores,
    mean_baseline,
    metric_mode,
    regression_metrics,
)
from paramaudit.overfit import Curves, assess

HP = {"learning_rate": 1e-2, "num_layers": 1, "hidden_size": 32, "dropout": 0.0,
      "batch_size": 32, "weight_decay": 0.0}


def numeric_table(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """y = 3 a - 2 b + 50 + noise: a target a small MLP learns in a few epochs."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    return pd.DataFrame({"a": a, "b": b, "c": rng.normal(size=n),
                         "y": 3 * a - 2 * b + 50 + rng.normal(scale=0.3, size=n)})


# --------------------------------------------------------------------------- the task


@pytest.mark.parametrize(("values", "task"), [
    (np.linspace(0.5, 99.5, 200), "regression"),  # floats
    (np.arange(200) % 60 + 18, "regression"),  # 60 integers in 200 rows (30%)
    (np.arange(10_000) % 50, "classification"),  # 50 integers in 10,000 rows (0.5%)
    (np.arange(200) % 5, "classification"),  # small integers
    (np.arange(200) % 5 * 1.0, "classification"),  # integers read as floats
    (np.array(["yes", "no"] * 100), "classification"),
    (np.array([True, False] * 100), "classification"),
    (np.arange(300) % 150, "regression"),  # more distinct values than MAX_CLASSES
])
def test_task_auto(values: np.ndarray, task: str) -> None:
    assert resolve_task(pd.Series(values)) == task
    assert resolve_task(pd.Series(values), "classification") == "classification"


def test_config_task_field_and_its_checks() -> None:
    assert PipelineConfig().task == "auto"
    assert build_config({"task": "regression", "data": {"dataset": "diabetes"}}).task == "regression"
    with pytest.raises(ConfigError, match="val_accuracy is a classification metric"):
        build_config({"task": "regression", "data": {"path": "x.csv", "target": "y"},
                      "search": {"metric": "val_accuracy"}})
    with pytest.raises(ConfigError, match="val_rmse is a regression metric"):
        build_config({"task": "classification", "data": {"path": "x.csv", "target": "y"},
                      "search": {"metric": "val_rmse"}})
    with pytest.raises(ConfigError, match="'diabetes'"):  # task auto, a known regression
        build_config({"data": {"dataset": "diabetes"}, "search": {"metric": "val_roc_auc"}})
    with pytest.raises(ConfigError, match="built-in data set 'iris' is classification"):
        build_config({"task": "regression", "data": {"dataset": "iris"}})
    assert set(CLASSIFICATION_METRICS) == set(TASK_METRICS["classification"])
    assert set(REGRESSION_METRICS) == set(TASK_METRICS["regression"])
    assert {m: metric_mode(m) for m in REGRESSION_METRICS} == {
        "val_rmse": "min", "val_mae": "min", "val_r2": "max"}


def test_task_hyperparameters() -> None:
    reg = resolve_hyperparameters({"label_smoothing": 0.1, "loss": "huber"}, "mlp", "regression")
    assert reg["loss"] == "huber" and "label_smoothing" not in reg and "class_weight" not in reg
    cls = resolve_hyperparameters({"label_smoothing": 0.1, "loss": "huber"}, "mlp")
    assert "loss" not in cls and cls["label_smoothing"] == 0.1
    with pytest.raises(ConfigError, match="loss"):
        build_config({"search": {"space": {"loss": "mae"}}})


# --------------------------------------------------------------------------- the data


def test_a_float_target_file_is_a_regression(tmp_path: Path) -> None:
    p = tmp_path / "reg.csv"
    frame = numeric_table()
    frame.loc[[3, 7, 11], "y"] = np.nan
    frame.to_csv(p, index=False)
    ds = load_dataset(csv_cfg(p, target="y"))
    assert ds.y.dtype == np.float64 and ds.class_names == []
    target = next(r for r in ds.columns_report if r["column"] == "y")
    assert "regression" in target["action"] and "3 rows without one dropped" in target["action"]
    s = load_and_split(PipelineConfig(data=csv_cfg(p, target="y")))
    assert s.task == "regression" and s.n_outputs == 1
    assert s.row_counts["dropped_missing_target"] == 3 and sum(s.sizes().values()) == 197
    assert s.target_scaler is not None
    assert s.target_scaler.mean == pytest.approx(s.y_train.mean())
    assert s.target_scaler.std == pytest.approx(s.y_train.std())


def test_regression_on_a_text_target_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "text.csv"
    frame = numeric_table(60)
    frame["y"] = np.array(["low", "mid", "high"])[np.arange(60) % 3]
    frame.to_csv(p, index=False)
    with pytest.raises(DataError) as info:
        load_dataset(csv_cfg(p, target="y"), task="regression")
    msg = str(info.value)
    assert "\n" not in msg and "'y'" in msg and "numeric target" in msg and "text" in msg
    assert load_dataset(csv_cfg(p, target="y")).class_names == ["high", "low", "mid"]  # auto


def test_auto_regression_with_a_classification_metric_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "reg.csv"
    numeric_table().to_csv(p, index=False)
    cfg = build_config({"data": {"path": str(p), "target": "y"},
                        "search": {"metric": "val_balanced_accuracy"}})
    with pytest.raises(ConfigError, match="task auto chose regression"):
        check_inputs(cfg)


def test_diabetes_built_in_end_to_end() -> None:
    from paramaudit.final_model import train_best
    from paramaudit.training import predict_regression

    cfg = build_config({"data": {"dataset": "diabetes"}})
    s = load_and_split(cfg)
    assert s.task == "regression" and s.n_features == 10 and sum(s.sizes().values()) == 442
    final = train_best(s, "mlp", {**HP, "learning_rate": 3e-3, "hidden_size": 64},
                       max_epochs=25, patience=10, seed=0)
    tm, base = final.test_metrics, final.baseline
    assert set(tm) == {"n", "r2", "rmse", "mae", "loss"}
    assert tm["r2"] > 0.2 and tm["rmse"] < base["rmse"]  # the mean scores R² about 0
    assert abs(base["r2"]) < 0.05 and base["predicts"] == pytest.approx(s.y_train.mean())
    assert final.test_accuracy is None and final.test_score == tm["r2"]
    assert final.history.train_accuracy == [] and len(final.history.val_r2) == len(
        final.history.val_loss)
    # the served model answers in original units
    import torch

    served = final.served_model()
    with torch.no_grad():
        out = served(torch.from_numpy(s.x_test[:5])).numpy()
    assert out.shape == (5, 1)
    assert np.allclose(out[:, 0], predict_regression(final.model, s.x_test[:5],
                                                     final.target_scaler), atol=1e-3)


# --------------------------------------------------------------------------- metrics


def test_target_scaling_round_trip_and_metrics_in_original_units() -> None:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    rng = np.random.default_rng(1)
    y = rng.normal(150, 70, size=80)
    pred = y + rng.normal(0, 20, size=80)
    scaler = TargetScaler.fit(y)
    assert np.allclose(scaler.unscale(scaler.scale(y)), y, atol=1e-3)
    assert abs(float(scaler.scale(y).mean())) < 1e-5
    m = regression_metrics(y, scaler.unscale(scaler.scale(pred)))
    assert m["rmse"] == pytest.approx(math.sqrt(mean_squared_error(y, pred)), rel=1e-5)
    assert m["mae"] == pytest.approx(mean_absolute_error(y, pred), rel=1e-5)
    assert m["r2"] == pytest.approx(r2_score(y, pred), rel=1e-5)
    fast = epoch_regression_scores(y, pred)
    assert all(fast[k] == pytest.approx(m[k]) for k in ("r2", "rmse", "mae"))
    assert TargetScaler.fit(np.ones(5)).std == 1.0  # a constant target does not divide by 0


def test_mean_baseline_and_comparison() -> None:
    base = mean_baseline([100.0, 200.0, 156.3], [120.0, 180.0])
    assert base["predicts"] == pytest.approx(152.1) and set(base) == {"n", "r2", "rmse", "mae",
                                                                     "predicts"}
    assert base["rmse"] == pytest.approx(math.sqrt(((120 - 152.1) ** 2 + (180 - 152.1) ** 2) / 2))
    worse = compare_to_baseline({"r2": 0.01, "rmse": 30.0}, {**base, "r2": 0.0}, 0.02)
    assert not worse.beats and worse.metric == "r2"
    assert "no better than always predicting the mean 152.1 (R² 0.01" in worse.message
    assert compare_to_baseline({"r2": 0.4}, {**base, "r2": 0.0}, 0.02).beats


# --------------------------------------------------------------------------- overfit rules


def reg_curves(train_r2: list[float], val_r2: list[float], train_loss: list[float] | None = None,
               val_loss: list[float] | None = None) -> Curves:
    return Curves(train_loss or [1.0 - r for r in train_r2], val_loss or [1.0 - r for r in val_r2],
                  [], [], train_r2=train_r2, val_r2=val_r2)


def test_regression_gap_both_ways() -> None:
    cfg = OverfitConfig()
    ok = assess(reg_curves([0.6, 0.7], [0.58, 0.66]), cfg, params_trainable=10, n_train=100)
    assert ok.verdict == "ok"
    v = assess(reg_curves([0.6, 0.95], [0.5, 0.7]), cfg, params_trainable=10, n_train=100)
    gap = v.fired("gap")
    assert v.verdict == "overfit" and gap is not None
    assert "train R² 0.950 - val R² 0.700 = 0.250 > max_r2_gap 0.100" in gap.message
    warn = assess(reg_curves([0.8], [0.73]), cfg, params_trainable=10, n_train=100)
    assert warn.verdict == "warn" and "max_r2_gap/2 0.050" in warn.fired("gap").message


def test_regression_optimism_baseline_capacity_and_divergence() -> None:
    cfg = OverfitConfig()
    curves = reg_curves([0.6, 0.62], [0.58, 0.6])
    v = assess(curves, cfg, params_trainable=10, n_train=100, test_r2=0.3, n_trials=8)
    assert "val R² 0.600 - test R² 0.300 = 0.300 > max_r2_optimism 0.100" in \
        v.fired("selection_optimism").message
    assert assess(curves, cfg, params_trainable=10, n_train=100, test_r2=0.55).fired(
        "selection_optimism") is None
    base = {"r2": -0.01, "rmse": 70.0, "mae": 60.0, "predicts": 152.1}
    v = assess(curves, cfg, params_trainable=10, n_train=100,
               test_metrics={"r2": 0.0, "rmse": 70.0}, baseline=base)
    assert v.no_better_than_baseline is not None and "the mean 152.1" in v.fired("baseline").message
    assert assess(curves, cfg, params_trainable=10, n_train=100, test_metrics={"r2": 0.5},
                  baseline=base).fired("baseline") is None
    assert assess(curves, cfg, params_trainable=20_000, n_train=100).fired("capacity") is not None
    div = reg_curves([0.1] * 6, [0.1] * 6, train_loss=[1.0, 0.8, 0.6, 0.4, 0.3, 0.2],
                     val_loss=[1.0, 0.5, 0.7, 0.8, 0.9, 1.0])
    assert assess(div, cfg, params_trainable=10, n_train=100).fired("divergence") is not None
    with pytest.raises(ValueError, match="differ in length"):
        Curves([1.0], [1.0], [], [], train_r2=[0.5], val_r2=[])


# --------------------------------------------------------------------------- trials


def reg_data(n: int = 80) -> dict:
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(n, 4))
    y = raw @ np.array([2.0, -1.0, 0.5, 0.0]) * 10 + 100
    return {"x_train": raw[:60], "y_train": y[:60], "x_val": raw[60:], "y_val": y[60:],
            "raw_train": raw[:60], "raw_val": raw[60:], "input_shape": (4,), "n_classes": 0,
            "task": "regression", "n_outputs": 1}


def test_trial_data_uses_kfold_for_regression() -> None:
    from paramaudit.search.trainable import trial_data

    settings = {"seed": 0, "preprocess": {"scaler": "standard", "pca_components": None},
                "cv_folds": 4}
    folds, shape = trial_data({}, reg_data(), settings)
    assert len(folds) == 4 and shape == (4,)
    assert all(len(y_v) == 20 and y_v.dtype == np.float64 for (_, _), (_, y_v) in folds)


def test_fit_folds_reports_r2_spread() -> None:
    from paramaudit.models import build_model
    from paramaudit.training import fit_folds

    d = reg_data()
    folds = [((d["x_train"][:40], d["y_train"][:40]), (d["x_train"][40:], d["y_train"][40:])),
             ((d["x_train"][20:], d["y_train"][20:]), (d["x_train"][:20], d["y_train"][:20]))]
    seen: list[dict] = []
    fit_folds([build_model("mlp", (4,), 1, **HP) for _ in folds], folds, HP, max_epochs=2,
              on_epoch=lambda e, m: seen.append(m), task="regression")
    assert {"val_r2_std", "fold0_val_r2", "fold1_val_r2", "val_rmse", "val_mae"} <= set(seen[-1])
    assert not any("accuracy" in k for k in seen[-1])


def test_a_regression_trial_through_the_trainable(monkeypatch) -> None:
    from ray import tune

    from paramaudit.config import SearchConfig
    from paramaudit.search import trainable as trainable_mod

    reported: list[dict] = []
    monkeypatch.setattr(tune, "report", lambda result, checkpoint=None: reported.append(result))
    monkeypatch.setattr("ray.get_runtime_context",
                        lambda: SimpleNamespace(get_node_id=lambda: "node"))
    settings = {"model": "mlp", "seed": 0, "max_epochs": 3, "n_train": 60, "patience": 5,
                "divergence": None, "search": SearchConfig(), "cv_folds": None,
                "preprocess": {"scaler": "standard", "pca_components": None, "augment": False}}
    trainable_mod.trainable({**HP, "loss": "huber"}, reg_data(), settings)
    assert len(reported) == 3
    last = reported[-1]
    assert {"train_loss", "train_r2", "val_loss", "val_r2", "val_rmse", "val_mae"} <= set(last)
    assert "val_accuracy" not in last and last["params_trainable"] == 4 * 32 + 32 + 32 + 1
    assert last["val_r2"] > 0  # three epochs on a linear target


def test_the_trial_logger_reads_a_regression_trial(tmp_path, monkeypatch) -> None:
    from paramaudit.search.records import trial_table
    from paramaudit.search.trial_log import TrialLogger
    from paramaudit.tracking import Tracker

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    cfg = build_config({"tracking": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
                                     "artifact_location": str(tmp_path / "art")},
                        "task": "regression", "data": {"dataset": "diabetes"},
                        "search": {"metric": "val_rmse"}})
    tracker = Tracker(cfg.tracking, "reg")
    parent = tracker.start_run("parent")
    logger = TrialLogger(tracker, parent, cfg, 100, lambda _m: None)
    trial = SimpleNamespace(trial_id="t1", config={"learning_rate": 0.01})
    logger.on_trial_start(0, [], trial)
    for epoch, (tr, va) in enumerate(((0.5, 0.45), (0.9, 0.5)), start=1):
        logger.on_trial_result(0, [], trial, {
            "train_loss": 1 - tr, "train_r2": tr, "val_loss": 1 - va, "val_r2": va,
            "val_rmse": 60.0 / epoch, "val_mae": 50.0, "params_trainable": 10})
    logger.on_trial_complete(0, [], trial)
    logger.close()
    rec = logger.records["t1"]
    assert rec.task == "regression" and rec.best("val_rmse", "min") == 30.0
    assert rec.verdict == "overfit"  # train R² 0.9 - val R² 0.5 at the best epoch
    h = rec.to_history()
    assert h.task == "regression" and h.val_r2 == [0.45, 0.5] and h.val_accuracy == []
    row = trial_table([rec])[0]
    assert row["best_val_r2"] == 0.5 and "best_val_accuracy" not in row
    history = tracker.client.get_metric_history(rec.run_id, "val_rmse")
    assert sorted((m.step, m.value) for m in history) == [(1, 60.0), (2, 30.0)]


# --------------------------------------------------------------------------- reports


def test_regression_report_views(tmp_path: Path) -> None:
    from paramaudit.metrics import comparison_markdown, plot_predictions, scalar_metrics
    from paramaudit.runreport import plot_learning_curves
    from paramaudit.training import History

    test = {"n": 5, "r2": 0.5, "rmse": 40.0, "mae": 30.0, "loss": 0.5}
    base = {"n": 5, "r2": -0.01, "rmse": 70.0, "mae": 60.0, "predicts": 152.1}
    md = comparison_markdown(test, base)
    assert "training mean 152.1" in md and "| R² | 0.5000 | -0.0100 |" in md
    assert scalar_metrics(test, "test") == {"test_r2": 0.5, "test_rmse": 40.0, "test_mae": 30.0}
    assert plot_predictions([1.0, 2.0, 3.0], [1.1, 1.9, 3.2], tmp_path / "p.png").is_file()
    h = History(train_loss=[1.0, 0.5], val_loss=[1.0, 0.6], train_r2=[0.0, 0.5],
                val_r2=[0.0, 0.4], task="regression", best_epoch=1)
    assert plot_learning_curves(h, tmp_path / "c.png").is_file()
