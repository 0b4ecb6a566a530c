"""Unit tests of the search's pure parts: space translation, budget, stopper, names, tables."""

from __future__ import annotations

import math

import pytest

from paramaudit.config import SearchConfig, build_config
from paramaudit.tuning import (
    DivergenceStopper,
    TrialRecord,
    count_trainable_params,
    over_budget,
    param_space,
    ray_environment,
    ray_home,
    trial_run_name,
    trial_table,
)


def test_param_space_maps_each_distribution() -> None:
    from ray.tune.search.sample import Categorical, Float, Integer

    space = param_space(SearchConfig(space={
        "learning_rate": {"loguniform": [1e-4, 1e-1]},
        "dropout": {"uniform": [0.0, 0.5]},
        "hidden_size": {"randint": [8, 64]},
        "optimizer": {"choice": ["adam", "sgd"]},
        "activation": "relu",
    }))
    assert isinstance(space["learning_rate"], Float)
    assert isinstance(space["dropout"], Float)
    assert isinstance(space["hidden_size"], Integer)
    assert isinstance(space["optimizer"], Categorical)
    assert space["activation"] == "relu"


def test_grid_turns_choices_into_grid_search() -> None:
    space = param_space(SearchConfig(algorithm="grid", space={
        "hidden_size": {"choice": [32, 64]}, "optimizer": "adam"}))
    assert space["hidden_size"] == {"grid_search": [32, 64]}
    assert space["optimizer"] == "adam"


def test_meta_count_matches_the_real_model() -> None:
    from models import build_model

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


def test_divergence_stopper_stops_only_a_diverging_trial() -> None:
    stopper = DivergenceStopper(tolerance=0.1, k=3)
    healthy = [(1.0, 1.0), (0.8, 0.8), (0.6, 0.7), (0.5, 0.65), (0.4, 0.6), (0.3, 0.6)]
    for train, val in healthy:
        assert stopper("a", {"train_loss": train, "val_loss": val}) is False
    diverging = [(1.0, 1.0), (0.8, 0.5), (0.6, 0.6), (0.4, 0.7), (0.3, 0.8)]
    decisions = [stopper("b", {"train_loss": t, "val_loss": v}) for t, v in diverging]
    assert decisions == [False, False, False, False, True]
    assert "b" in stopper.reasons and "a" not in stopper.reasons
    assert stopper("c", {"skipped": 1}) is True


def test_divergence_stopper_is_a_tune_stopper() -> None:
    from ray.tune import Stopper

    wrapped = DivergenceStopper(0.1, 3).as_tune_stopper()
    assert isinstance(wrapped, Stopper)
    assert wrapped("x", {"train_loss": 1.0, "val_loss": 1.0}) is False
    assert wrapped.stop_all() is False


def test_trial_names_say_what_was_tried() -> None:
    name = trial_run_name(7, {"num_layers": 2, "hidden_size": 64, "optimizer": "adam",
                              "learning_rate": 0.00123})
    assert name == "trial-007 2x64 adam lr=0.0012"


def test_trial_table_and_best() -> None:
    rec = TrialRecord("t1", 1, {"learning_rate": 0.1}, params_trainable=10, status="TERMINATED")
    for v in (0.9, 0.5, 0.7):
        rec.history["val_loss"].append(v)
        rec.history["train_loss"].append(v)
        rec.history["val_accuracy"].append(1 - v)
        rec.history["train_accuracy"].append(1 - v)
    assert rec.best("val_loss", "min") == 0.5
    assert rec.best("val_accuracy", "max") == pytest.approx(0.5)
    empty = TrialRecord("t2", 2, {}, status="ERROR", error="boom")
    assert math.isinf(empty.best("val_loss", "min"))
    rows = trial_table([rec, empty])
    assert rows[0]["hp_learning_rate"] == 0.1 and rows[0]["epochs"] == 3
    assert rows[1]["error"] == "boom" and rows[1]["epochs"] == 0


def test_ray_start_environment_blocks_the_metadata_probe() -> None:
    env = ray_environment()
    assert env["RAY_USAGE_STATS_ENABLED"] == "0"
    home = ray_home()
    assert (home / "ray_bootstrap_config.yaml").is_file()


def test_smoke_config_is_small() -> None:
    cfg = build_config({"smoke": True}).effective()
    assert cfg.search.trials <= 2 and cfg.train.max_epochs <= 2


def test_trial_data_refits_preprocessing_per_trial_and_per_fold() -> None:
    import numpy as np

    from paramaudit.tuning import trial_data

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
