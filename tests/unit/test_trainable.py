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
