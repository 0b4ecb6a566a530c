"""The patches of Ray's private API: each target still exists with the shape patched, the version
guard accepts the installed Ray, and each patch applies only while it should.

When Ray is upgraded and one of these fails, the patch in paramaudit/search/ray_internals.py
must be checked against the new Ray before TESTED_RAY is widened.
"""

from __future__ import annotations

import inspect
import logging
import sys
import warnings
from types import SimpleNamespace

import pytest

from paramaudit.search import ray_internals
from paramaudit.search.ray_internals import (
    ANALYSIS_LOGGER,
    CONTROLLER_ATTRIBUTES,
    NO_RESULT_FILES,
    REUSE_METHOD,
    STATE_LOGGER,
    UNUSED_HEAD_PROCESSES,
    NoResultFiles,
    StateCopyRace,
    UnsupportedRayError,
    is_tested,
    lean_local_node,
    plain_trial_actors,
    started_actors_kept,
)


def _params(fn: object) -> list[str]:
    return list(inspect.signature(fn).parameters)  # type: ignore[arg-type]


# -- the version guard -----------------------------------------------------------------------------
def test_the_version_guard_accepts_the_installed_ray_and_nothing_outside_the_range() -> None:
    import ray

    assert is_tested(), f"Ray {ray.__version__} is outside TESTED_RAY: check every patch first"
    assert is_tested("2.50.0") and is_tested("2.99.1") and is_tested("2.60.0rc1")
    assert not is_tested("2.49.9") and not is_tested("3.0.0") and not is_tested("nightly")


def test_the_tested_range_is_the_one_pyproject_allows() -> None:
    from pathlib import Path

    import tomllib

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    assert "ray[tune]>=2.50,<3" in deps


def test_an_untested_ray_fails_the_safety_patches_and_skips_the_others(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.setattr(ray, "__version__", "3.1.0")
    with pytest.raises(UnsupportedRayError, match=r"Ray 3\.1\.0 is outside .*2\.50 to 2\.x"):
        with lean_local_node("127.0.0.1"):
            pass
    with pytest.raises(UnsupportedRayError, match="_node_ip_address"):
        ray_internals.node_ip_option("127.0.0.1")
    with pytest.raises(UnsupportedRayError, match="--resume"):
        ray_internals.use_live_callbacks(SimpleNamespace(), [])
    with pytest.warns(RuntimeWarning, match="cold worker"):
        assert ray_internals.warm_worker_options(["x"]) == {}
    with pytest.warns(RuntimeWarning, match="SIGTERM"), ray_internals.ray_keeps_sigterm_handler(True):
        pass
    from ray.tune.execution import class_cache

    with pytest.warns(RuntimeWarning, match="runtime env"), plain_trial_actors(True):
        assert class_cache.DEFAULT_ENV_VARS  # left as Tune has it
    with pytest.warns(RuntimeWarning, match="started trial actors"), started_actors_kept():
        pass
    with pytest.warns(RuntimeWarning, match="log filters"):
        ray_internals.quiet_tune()


# -- the targets exist, with the shape the patches expect ------------------------------------------
def test_ray_init_still_reads_its_private_keywords() -> None:
    import ray

    source = inspect.getsource(ray.init)
    assert 'kwargs.pop("_node_ip_address"' in source
    assert 'kwargs.pop("_system_config"' in source
    assert "ray._private.utils.set_sigterm_handler(" in inspect.getsource(ray._private.worker.init)


def test_the_sigterm_targets_exist() -> None:
    from ray._private import ray_constants, utils

    assert callable(utils.set_sigterm_handler) and len(_params(utils.set_sigterm_handler)) == 1
    assert isinstance(ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER, bool)


def test_the_local_node_targets_exist() -> None:
    from ray._private import node, services, utils

    for name in UNUSED_HEAD_PROCESSES:
        assert callable(getattr(node.Node, name)), name
        assert _params(getattr(node.Node, name))[0] == "self"
    assert _params(services.resolve_ip_for_localhost) == ["host"]
    assert _params(utils.get_dashboard_dependency_error) == []


def test_the_trial_actor_targets_exist() -> None:
    from ray.air.execution._internal import RayActorManager
    from ray.tune.execution import class_cache
    from ray.tune.execution.tune_controller import TuneController

    assert isinstance(class_cache.DEFAULT_ENV_VARS, dict) and class_cache.DEFAULT_ENV_VARS
    assert isinstance(class_cache.ENV_VARS_TO_PROPAGATE, set)
    assert _params(getattr(TuneController, REUSE_METHOD)) == ["self", "trial"]
    init = inspect.getsource(TuneController.__init__)
    assert [a for a in CONTROLLER_ATTRIBUTES if f"self.{a} " not in init
            and f"self.{a}:" not in init] == []
    assert _params(RayActorManager.is_actor_started) == ["self", "tracked_actor"]


def test_the_restored_tuner_keeps_its_run_config_where_the_patch_sets_it() -> None:
    from ray.tune import RunConfig, Tuner
    from ray.tune.impl.tuner_internal import TunerInternal

    assert "self._local_tuner = " in inspect.getsource(Tuner.__init__)
    assert "self._run_config = " in inspect.getsource(TunerInternal.__init__)
    assert "callbacks" in _params(RunConfig)


def test_the_loggers_the_filters_sit_on_exist_and_log_those_lines() -> None:
    import importlib

    for name in (STATE_LOGGER, ANALYSIS_LOGGER):
        module = importlib.import_module(name)
        assert module.logger.name == name
    analysis = inspect.getsource(importlib.import_module(ANALYSIS_LOGGER))
    assert f'f"{NO_RESULT_FILES} ' in analysis
    assert "Saving experiment state to storage" in inspect.getsource(
        importlib.import_module(STATE_LOGGER))


# -- each patch, applied and undone ----------------------------------------------------------------
def test_lean_local_node_patches_ray_only_while_it_starts() -> None:
    from ray._private import node, services, utils

    before = {name: getattr(node.Node, name) for name in UNUSED_HEAD_PROCESSES}
    rewrite, check = services.resolve_ip_for_localhost, utils.get_dashboard_dependency_error
    with pytest.raises(RuntimeError, match="ray.init failed"), lean_local_node("127.0.0.1"):
        assert services.resolve_ip_for_localhost("127.0.0.1") == "127.0.0.1"
        assert isinstance(utils.get_dashboard_dependency_error(), ImportError)
        for name in UNUSED_HEAD_PROCESSES:
            assert getattr(node.Node, name) is not before[name]
            assert getattr(node.Node, name)(object()) is None  # starts nothing
        raise RuntimeError("ray.init failed")
    assert {name: getattr(node.Node, name) for name in UNUSED_HEAD_PROCESSES} == before
    assert services.resolve_ip_for_localhost is rewrite
    assert utils.get_dashboard_dependency_error is check


def test_ray_init_keeps_the_sigterm_handler_only_while_asked() -> None:
    from ray._private import ray_constants, utils

    original, crash = utils.set_sigterm_handler, ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER
    with ray_internals.ray_keeps_sigterm_handler(False):
        assert utils.set_sigterm_handler is original
    with ray_internals.ray_keeps_sigterm_handler(True):
        assert utils.set_sigterm_handler is not original
        assert utils.set_sigterm_handler(lambda *_: None) is None  # installs nothing
        assert ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER is True
    assert utils.set_sigterm_handler is original
    assert ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER == crash


def test_trial_actors_drop_tunes_runtime_env_only_on_our_own_ray() -> None:
    from ray.tune.execution import class_cache

    from paramaudit.search.ray_runtime import ray_environment

    defaults = dict(class_cache.DEFAULT_ENV_VARS)
    propagated = set(class_cache.ENV_VARS_TO_PROPAGATE)
    assert defaults and propagated  # what Tune would put on every trial actor
    with plain_trial_actors(False):  # no local Ray of ours: Tune's defaults stand
        assert class_cache.DEFAULT_ENV_VARS == defaults
    with pytest.raises(RuntimeError, match="boom"), plain_trial_actors(True):
        assert class_cache.DEFAULT_ENV_VARS == {}
        assert class_cache.ENV_VARS_TO_PROPAGATE == set()
        raise RuntimeError("boom")
    assert class_cache.DEFAULT_ENV_VARS == defaults
    assert class_cache.ENV_VARS_TO_PROPAGATE == propagated
    assert ray_environment()["PL_DISABLE_FORK"] == defaults["PL_DISABLE_FORK"]


def test_a_trial_keeps_an_actor_that_holds_a_worker_and_waits_otherwise(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.tune.execution.tune_controller import TuneController

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

    monkeypatch.setattr(TuneController, REUSE_METHOD, fake_reuse)
    with started_actors_kept():
        keep = TuneController._maybe_reuse_cached_actor
        assert keep(Controller(), "has_started") is False  # keeps its own, being created
        assert keep(Controller(), "has_pending") is True  # only a request: reuse
        assert keep(Controller(), "no_actor") is True
        assert keep(Controller(), "resetting") is True  # Tune's own case, unchanged
    assert calls == ["has_pending", "no_actor", "resetting"]
    assert TuneController._maybe_reuse_cached_actor is fake_reuse


def test_a_restored_tuner_gets_the_live_callbacks() -> None:
    run_config = SimpleNamespace(callbacks=["unpickled copy"])
    tuner = SimpleNamespace(_local_tuner=SimpleNamespace(_run_config=run_config))
    live = object()
    ray_internals.use_live_callbacks(tuner, [live])
    assert run_config.callbacks == [live]
    with pytest.raises(UnsupportedRayError, match="gone"):
        ray_internals.use_live_callbacks(SimpleNamespace(_local_tuner=None), [live])


def test_no_patch_warns_on_the_installed_ray() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "_system_config" in ray_internals.warm_worker_options(["x"])
        assert ray_internals.node_ip_option("127.0.0.1") == {"_node_ip_address": "127.0.0.1"}
        ray_internals.quiet_tune()
    assert any(isinstance(f, StateCopyRace) for f in logging.getLogger(STATE_LOGGER).filters)
    assert any(isinstance(f, NoResultFiles) for f in logging.getLogger(ANALYSIS_LOGGER).filters)


# -- the log filters -------------------------------------------------------------------------------
def test_tunes_state_copy_race_is_one_line_and_other_errors_keep_their_traceback() -> None:
    def record(exc: BaseException) -> logging.LogRecord:
        try:
            raise exc
        except BaseException:
            info = sys.exc_info()
        return logging.LogRecord(STATE_LOGGER, logging.ERROR, __file__,
                                 1, "Saving experiment state to storage at %r failed", ("/x",),
                                 info)

    race = record(FileNotFoundError(
        "[Errno 2] Failed to open local file '/tmp/ray/s/driver_artifacts/"
        ".abc-tmp-basic-variant-state-2026.json'"))
    assert StateCopyRace().filter(race)
    assert race.levelno == logging.WARNING and race.exc_info is None
    assert "raced a temporary file" in race.getMessage()
    other = record(PermissionError("denied"))
    assert StateCopyRace().filter(other)
    assert other.levelno == logging.ERROR and other.exc_info is not None


def test_tunes_missing_result_files_warning_is_dropped_and_nothing_else() -> None:
    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord(ANALYSIS_LOGGER, logging.WARNING,
                                 __file__, 1, msg, None, None)

    assert not NoResultFiles().filter(record("Failed to fetch metrics for 2 trial(s):\n- a"))
    assert NoResultFiles().filter(record("No checkpoints have been found for trial t."))
