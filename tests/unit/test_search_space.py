"""Unit tests of the search space: Tune domains, grids, and how many trials run at once."""

from __future__ import annotations

from paramaudit.config import SearchConfig, build_config
from paramaudit.search.space import param_space, trial_slots


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


def test_smoke_config_is_small() -> None:
    cfg = build_config({"smoke": True}).effective()
    assert cfg.search.trials <= 2 and cfg.train.max_epochs <= 2


def test_trial_slots_is_what_the_search_can_run_at_once() -> None:
    assert trial_slots(build_config({"search": {"trials": 3}})) == 3
    assert trial_slots(build_config({"search": {"trials": 9, "max_concurrent": 2}})) == 2
    assert trial_slots(build_config({"search": {"algorithm": "bayes", "trials": 9}})) == 2
    grid = build_config({"search": {"algorithm": "grid", "trials": 2, "space": {
        "learning_rate": {"choice": [0.1, 0.01]}, "hidden_size": {"choice": [8, 16, 32]},
        "optimizer": "adam"}}})
    assert trial_slots(grid) == 12  # 2 x 3 combinations, twice
    grid_with_model = build_config({"model": {"choice": ["mlp", "cnn"]},
                                    "data": {"dataset": "digits"},
                                    "search": {"algorithm": "grid", "trials": 1, "space": {
                                        "learning_rate": {"choice": [0.1, 0.01]}}}})
    assert trial_slots(grid_with_model) == 4
