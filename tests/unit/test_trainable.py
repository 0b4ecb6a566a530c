"""Unit tests of a trial's own parts: the parameter count, the budget, the data it trains on."""

from __future__ import annotations

from paramaudit.config import SearchConfig
from paramaudit.search.trainable import count_trainable_params, over_budget, trial_data


def test_meta_count_matches_the_real_model() -> None:
    from paramaudit.models import build_model

    hp = {"num_layers": 2, "hidden_size": 48}
    real = build_model("mlp", (64,), 10, **hp)
    assert count_trainable_params("mlp", (64,), 10, hp) == sum(p.numel() for p in real.parameters())


def test_over_budget_on_both_sides() -> None:
    search = SearchConfig(max_params=1000, max_params_per_sample=2.0)
    assert over_budget(1000, 10_000, search) is None
    assert "max_params" in over_budget(1001, 10_000, search)
    assert over_budget(200, 100, search) is None
    reason = over_budget(201, 100, search)
    assert reason is not None and "per training sample" in reason
    assert over_budget(10**9, 1, SearchConfig()) is None


def test_trial_data_refits_preprocessing_per_trial_and_per_fold() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    raw_tr, raw_va = rng.normal(5, 3, size=(60, 6)), rng.normal(5, 3, size=(20, 6))
    y_tr, y_va = np.arange(60) % 2, np.arange(20) % 2
    data = {"x_train": raw_tr, "y_train": y_tr, "x_val": raw_va, "y_val": y_va,
            "raw_train": raw_tr, "raw_val": raw_va, "input_shape": (6,), "n_classes": 2}
    settings = {"seed": 0, "preprocess": {"scaler": "standard", "pca_components": None}}
    pairs, shape = trial_data({}, data, settings)
    assert shape == (6,) and pairs[0][0][0] is raw_tr  # nothing searched: the shared arrays
    pairs, shape = trial_data({"pca_components": 3, "scaler": "minmax"}, data, settings)
    (x_fit, _), (x_val, _) = pairs[0]
    assert shape == (3,) and x_fit.shape == (60, 3) and x_val.shape == (20, 3)
    folds, shape = trial_data({}, data, {**settings, "cv_folds": 4})
    assert len(folds) == 4 and shape == (6,)
    for (x_f, y_f), (_, y_v) in folds:
        assert len(y_f) == 60 and len(y_v) == 20
        # the scaler is fitted on each fold's training part alone
        assert np.allclose(x_f.mean(axis=0), 0, atol=1e-5)


def test_a_skipped_trial_reports_every_search_metric_at_its_worst() -> None:
    import math

    from paramaudit.metrics import SEARCH_METRICS
    from paramaudit.search.trainable import skipped_scores

    scores = skipped_scores()
    assert set(scores) == set(SEARCH_METRICS)  # Tune wants the search metric in every result
    for metric, mode in SEARCH_METRICS.items():
        assert scores[metric] == (math.inf if mode == "min" else 0.0)


def test_the_trial_logger_keeps_and_logs_every_search_metric(tmp_path, monkeypatch) -> None:
    from types import SimpleNamespace

    from paramaudit.config import build_config
    from paramaudit.search.trial_log import TrialLogger
    from paramaudit.tracking import Tracker

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    cfg = build_config({"tracking": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
                                     "artifact_location": str(tmp_path / "art")},
                        "search": {"metric": "val_balanced_accuracy"}})
    tracker = Tracker(cfg.tracking, "scores")
    parent = tracker.start_run("parent")
    logger = TrialLogger(tracker, parent, cfg, 100, lambda _m: None)
    trial = SimpleNamespace(trial_id="t1", config={"learning_rate": 0.01})
    logger.on_trial_start(0, [], trial)
    for epoch, bal in ((1, 0.6), (2, 0.7)):
        logger.on_trial_result(0, [], trial, {
            "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": 1.0 / epoch, "val_accuracy": 0.9,
            "val_balanced_accuracy": bal, "val_f1_macro": 0.5, "val_roc_auc": 0.8,
            "val_log_loss": 1.0 / epoch, "params_trainable": 10})
    logger.on_trial_complete(0, [], trial)
    logger.close()
    rec = logger.records["t1"]
    assert rec.best("val_balanced_accuracy", "max") == 0.7
    history = tracker.client.get_metric_history(rec.run_id, "val_balanced_accuracy")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.6), (2, 0.7)]
