"""Unit tests of the search: space translation, budget, names, tables, trial logger."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from paramaudit.config import SearchConfig, build_config
from paramaudit.tracking import Tracker
from paramaudit.tuning import (
    TrialRecord,
    count_trainable_params,
    make_trial_logger,
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


def test_trial_slots_is_what_the_search_can_run_at_once() -> None:
    from paramaudit.tuning import trial_slots

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


def test_lean_local_node_patches_ray_only_while_it_starts() -> None:
    from ray._private import node, services, utils

    from paramaudit.tuning import _UNUSED_HEAD_PROCESSES, _lean_local_node

    before = {name: getattr(node.Node, name) for name in _UNUSED_HEAD_PROCESSES}
    rewrite, check = services.resolve_ip_for_localhost, utils.get_dashboard_dependency_error
    with pytest.raises(RuntimeError, match="ray.init failed"), _lean_local_node():
        assert services.resolve_ip_for_localhost("127.0.0.1") == "127.0.0.1"
        assert isinstance(utils.get_dashboard_dependency_error(), ImportError)
        for name in _UNUSED_HEAD_PROCESSES:
            assert getattr(node.Node, name) is not before[name]
            assert getattr(node.Node, name)(object()) is None  # starts nothing
        raise RuntimeError("ray.init failed")
    assert {name: getattr(node.Node, name) for name in _UNUSED_HEAD_PROCESSES} == before
    assert services.resolve_ip_for_localhost is rewrite
    assert utils.get_dashboard_dependency_error is check


def test_trial_actors_drop_tunes_runtime_env_only_on_our_own_ray() -> None:
    from ray.tune.execution import class_cache

    from paramaudit import tuning

    defaults = dict(class_cache.DEFAULT_ENV_VARS)
    propagated = set(class_cache.ENV_VARS_TO_PROPAGATE)
    assert defaults and propagated  # what Tune would put on every trial actor
    with tuning._plain_trial_actors():  # no local Ray of ours: Tune's defaults stand
        assert class_cache.DEFAULT_ENV_VARS == defaults
    tuning._LOCAL_RAY["started"] = True
    try:
        with pytest.raises(RuntimeError, match="boom"), tuning._plain_trial_actors():
            assert class_cache.DEFAULT_ENV_VARS == {}
            assert class_cache.ENV_VARS_TO_PROPAGATE == set()
            raise RuntimeError("boom")
    finally:
        tuning._LOCAL_RAY["started"] = False
    assert class_cache.DEFAULT_ENV_VARS == defaults
    assert class_cache.ENV_VARS_TO_PROPAGATE == propagated
    assert ray_environment()["PL_DISABLE_FORK"] == defaults["PL_DISABLE_FORK"]


def test_tunes_state_copy_race_is_one_line_and_other_errors_keep_their_traceback() -> None:
    import logging
    import sys

    from paramaudit.tuning import _StateCopyRace

    def record(exc: BaseException) -> logging.LogRecord:
        try:
            raise exc
        except BaseException:
            info = sys.exc_info()
        return logging.LogRecord("ray.tune.execution.experiment_state", logging.ERROR, __file__,
                                 1, "Saving experiment state to storage at %r failed", ("/x",),
                                 info)

    race = record(FileNotFoundError(
        "[Errno 2] Failed to open local file '/tmp/ray/s/driver_artifacts/"
        ".abc-tmp-basic-variant-state-2026.json'"))
    assert _StateCopyRace().filter(race)
    assert race.levelno == logging.WARNING and race.exc_info is None
    assert "raced a temporary file" in race.getMessage()
    other = record(PermissionError("denied"))
    assert _StateCopyRace().filter(other)
    assert other.levelno == logging.ERROR and other.exc_info is not None


def test_tunes_missing_result_files_warning_is_dropped_and_nothing_else() -> None:
    import logging

    from paramaudit.tuning import _NoResultFiles

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("ray.tune.analysis.experiment_analysis", logging.WARNING,
                                 __file__, 1, msg, None, None)

    assert not _NoResultFiles().filter(record("Failed to fetch metrics for 2 trial(s):\n- a"))
    assert _NoResultFiles().filter(record("No checkpoints have been found for trial t."))


def test_a_trial_keeps_an_actor_that_holds_a_worker_and_waits_otherwise(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.tune.execution.tune_controller import TuneController

    from paramaudit.tuning import _started_actors_kept

    calls: list[str] = []
    started, pending = object(), object()

    class Controller:
        _resetting_trials: set[str] = {"resetting"}
        _trial_to_actor = {"has_started": started, "has_pending": pending,
                           "resetting": started}
        _actor_manager = SimpleNamespace(is_actor_started=lambda actor: actor is started)

    def fake_reuse(self: object, trial: str) -> bool:
        calls.append(trial)
        return True

    monkeypatch.setattr(TuneController, "_maybe_reuse_cached_actor", fake_reuse)
    with _started_actors_kept():
        keep = TuneController._maybe_reuse_cached_actor
        assert keep(Controller(), "has_started") is False  # keeps its own, being created
        assert keep(Controller(), "has_pending") is True  # only a request: reuse
        assert keep(Controller(), "no_actor") is True
        assert keep(Controller(), "resetting") is True  # Tune's own case, unchanged
    assert calls == ["has_pending", "no_actor", "resetting"]
    assert TuneController._maybe_reuse_cached_actor is fake_reuse


# -- the trial logger: MLflow writes behind Ray Tune's loop ---------------------------------------
@pytest.fixture
def logged_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Tracker, str, Any]:
    """A real sqlite tracker, a parent run, and the search's trial logger on it."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    cfg = build_config({"tracking": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
                                     "artifact_location": str(tmp_path / "art")},
                        "search": {"trials": 2}, "train": {"max_epochs": 2}})
    tracker = Tracker(cfg.tracking, "logger")
    parent = tracker.start_run("parent")
    return tracker, parent, make_trial_logger(tracker, parent, cfg, 100, lambda _m: None)


def _result(epoch: int) -> dict[str, Any]:
    return {"train_loss": 1.0 / epoch, "train_accuracy": 0.5, "val_loss": 1.1 / epoch,
            "val_accuracy": 0.4, "params_trainable": 10, "train_seconds": 0.01}


def test_trial_logger_writes_each_trial_whole_off_the_callers_thread(
        logged_search: tuple[Tracker, str, Any]) -> None:
    tracker, parent, logger = logged_search
    trial = SimpleNamespace(trial_id="t1", config={"learning_rate": 0.01})
    logger.on_trial_start(0, [], trial)
    for epoch in (1, 2):
        logger.on_trial_result(0, [], trial, _result(epoch))
    logger.on_trial_complete(0, [], trial)
    logger.flush()
    logger.close()
    (run,) = tracker.child_runs(parent)
    assert run.info.status == "FINISHED" and run.data.tags["trial_status"] == "TERMINATED"
    assert run.data.params["learning_rate"] == "0.01"
    history = tracker.client.get_metric_history(run.info.run_id, "val_loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 1.1), (2, 0.55)]
    assert logger.records["t1"].run_id == run.info.run_id


def test_a_failed_write_still_ends_every_open_run_and_is_raised(
        logged_search: tuple[Tracker, str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    tracker, parent, logger = logged_search
    done, running = (SimpleNamespace(trial_id=t, config={"learning_rate": lr})
                     for t, lr in (("t1", 0.01), ("t2", 0.02)))
    logger.on_trial_start(0, [], done)
    logger.on_trial_start(0, [], running)
    logger.on_trial_result(0, [], done, _result(1))

    log_record = tracker.log_record

    def store_full(run_id: str, steps: Any, tags: Any) -> None:
        if steps:  # the trial's record (its history); the tags-only writes after it go through
            raise OSError("No space left on device")
        log_record(run_id, steps, tags)

    monkeypatch.setattr(tracker, "log_record", store_full)  # the store fails on this write
    logger.on_trial_complete(0, [], done)
    with pytest.raises(OSError, match="No space left"):
        logger.close_open("KILLED", "interrupted")
    logger.close()
    runs = {r.data.tags["trial_id"]: r for r in tracker.child_runs(parent)}
    assert runs["t2"].info.status == "KILLED" and runs["t2"].data.tags["error"] == "interrupted"
    assert runs["t1"].info.status == "FAILED"  # finished, but its record never reached MLflow
    assert "record was not written" in runs["t1"].data.tags["error"]


def test_a_trial_that_stopped_itself_is_tagged_with_its_reason_and_weights(
        logged_search: tuple[Tracker, str, Any]) -> None:
    tracker, parent, logger = logged_search
    trial = SimpleNamespace(trial_id="t1", config={"learning_rate": 0.01})
    logger.on_trial_start(0, [], trial)
    logger.on_trial_result(0, [], trial, {**_result(1), "stopped_by": "early_stopping",
                                          "stop_reason": "early stopping: no improvement"})
    logger.on_checkpoint(0, [], trial, SimpleNamespace(path="/somewhere/checkpoint_000000"))
    logger.on_trial_complete(0, [], trial)
    logger.close()
    (run,) = tracker.child_runs(parent)
    assert run.data.tags["stopped_by"] == "early_stopping"
    assert run.data.tags["stop_reason"] == "early stopping: no improvement"
    assert run.data.tags["final_state"] == "/somewhere/checkpoint_000000"
    rec = logger.records["t1"]
    assert rec.checkpoint == "/somewhere/checkpoint_000000"
    h = rec.to_history()
    assert h.stopped_early and h.stopped_by == "early_stopping" and h.best_epoch == 0


def test_a_trial_cut_short_without_a_reason_of_its_own_was_stopped_by_asha(
        logged_search: tuple[Tracker, str, Any]) -> None:
    tracker, parent, logger = logged_search  # max_epochs is 2; this trial reports once
    trial = SimpleNamespace(trial_id="t1", config={"learning_rate": 0.01})
    logger.on_trial_start(0, [], trial)
    logger.on_trial_result(0, [], trial, _result(1))
    logger.on_trial_complete(0, [], trial)
    logger.close()
    (run,) = tracker.child_runs(parent)
    assert run.data.tags["stopped_by"] == "asha" and "final_state" not in run.data.tags
    assert logger.records["t1"].checkpoint is None
