"""Every use of Ray's and Ray Tune's private API, in one place, each behind a version guard.

Each patch says why no public API serves and what happens on a Ray outside the tested range
(``TESTED_RAY``, the range pyproject.toml allows):
- a patch that keeps the local Ray safe or correct (loopback only, no metadata probe, the
  resumed search's live callbacks) fails loudly: UnsupportedRayError, before anything starts;
- a patch that only saves time or noise (warm workers, signal handling Ray has a fallback for,
  log filters) is skipped with a RuntimeWarning: the search runs as Ray's defaults run it.
A target missing on a tested version is treated the same way. tests/unit/test_ray_internals.py
checks that every target exists and has the shape patched here, on the installed Ray.
Ray is imported inside the functions: importing this module must not import Ray.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from paramaudit.errors import UserInputError
from paramaudit.versions import in_range

# [lowest, first untested): the range of ray[tune] in pyproject.toml, each patch checked on it
TESTED_RAY = ((2, 50), (3, 0))
TESTED_TEXT = "2.50 to 2.x"


class UnsupportedRayError(UserInputError):
    """The installed Ray lacks an internal that paramaudit needs to run a search safely."""


def is_tested(version: str | None = None) -> bool:
    """Whether ``version`` (default: the installed Ray's) is in the range the patches were tested on."""
    if version is None:
        import ray

        version = ray.__version__
    return in_range(version, TESTED_RAY)


def _installed() -> str:
    import ray

    return str(ray.__version__)


def _require(patch: str, ok: bool, why: str) -> None:
    """Fail loudly where ``patch`` cannot be applied: the search would run unsafe or wrong."""
    if not is_tested():
        raise UnsupportedRayError(
            f"Ray {_installed()} is outside the range paramaudit is tested on ({TESTED_TEXT}): "
            f"{patch} relies on Ray internals that {why}; install ray[tune]>=2.50,<3")
    if not ok:
        raise UnsupportedRayError(
            f"Ray {_installed()}: the Ray internals that {patch} patches are gone; {why}")


def _applies(patch: str, ok: bool, without: str) -> bool:
    """Whether to apply ``patch``; if not, warn once: the search goes on without it."""
    if is_tested() and ok:
        return True
    where = (f"is outside the tested range ({TESTED_TEXT})" if not is_tested()
             else "lacks the internals it patches")
    warnings.warn(f"Ray {_installed()} {where}: {patch} skipped; {without}", RuntimeWarning,
                  stacklevel=3)
    return False


# -- Tune's stop handler ---------------------------------------------------------------------------
# Ray Tune ends a running search cleanly (trials stopped, state saved) from the handler that
# tune.run puts on SIGUSR1; Tune has no public call for that. paramaudit.stopping hands a stop to
# it when the handler in place is this one: a closure, known only by its module and qualified
# name (tests/integration/test_stop_signal.py checks both on the installed Ray). Elsewhere, or
# on an untested Ray, a stop is a KeyboardInterrupt in the driver, which Tune also handles.
TUNE_STOP_HANDLER = ("ray.tune.tune", "_setup_signal_catching.<locals>.signal_interrupt_tune_run")


def is_tune_stop_handler(handler: Any) -> bool:
    """Whether ``handler`` is Tune's own stop handler, on a Ray these names were checked on."""
    names = (getattr(handler, "__module__", None), getattr(handler, "__qualname__", None))
    return names == TUNE_STOP_HANDLER and callable(handler) and is_tested()


# -- ray.init --------------------------------------------------------------------------------------
# ray.init takes these two private keywords from its **kwargs and raises on a keyword it does not
# know, so a Ray without them fails at ray.init, loudly, on its own; the guards below add the
# version check (tests/unit/test_ray_internals.py checks that ray.init still reads both)
def node_ip_option(node_ip: str) -> dict[str, Any]:
    """ray.init's ``_node_ip_address``: the address this driver's node claims.

    ray.init has no public parameter for it. The local start needs exactly 127.0.0.1 (anything
    else and Ray's gRPC servers listen on every interface); a driver joining a cluster started
    on this machine's loopback needs that cluster's address, or Ray picks eth0 and finds no
    raylet there. Loud: without it the local Ray would listen beyond loopback.
    """
    _require("ray.init(_node_ip_address=...)", True, "keep the local Ray on loopback")
    return {"_node_ip_address": node_ip}


def warm_worker_options(preload: Iterable[str]) -> dict[str, Any]:
    """ray.init's ``_system_config``: pre-started idle workers that import ``preload`` and stay.

    Ray's only way to set these is its private system config. Skipped with a warning on an
    untested Ray (a key it does not know can stop it from starting): trials then start cold
    workers, slower, not wrong.
    """
    if not _applies("ray.init(_system_config=...) for warm workers", True,
                    "each trial slot starts a cold worker"):
        return {}
    return {"_system_config": {"preload_python_modules": list(preload),
                               "kill_idle_workers_interval_ms": 0,
                               "enable_worker_prestart": True}}


@contextmanager
def ray_keeps_sigterm_handler(keep: bool) -> Iterator[None]:
    """With ``keep``: ray.init leaves the SIGTERM handler as it is (paramaudit.stopping's).

    ray.init installs two: a Python one that calls sys.exit wherever the main thread is (exit
    code 15, a node half started, an exit that can land in the middle of an import), and, in
    the driver's core worker, a C++ crash handler that prints a stack dump on SIGTERM before
    anything else runs and that Ray's shutdown replaces with the system default. The CLI's
    handler raises only where that is safe, and the session stops what had started. Ray has no
    setting for the first: ray.init calls ``ray._private.utils.set_sigterm_handler``, held back
    here. The second is Ray's RAY_DISABLE_FAILURE_SIGNAL_HANDLER, read when Ray is imported: set
    on ``ray._private.ray_constants`` for this driver only (its workers keep their crash
    handler). Skipped with a warning where missing: Ray's handler stands and ray_session puts
    the CLI's back once ray.init returns.
    """
    from ray._private import ray_constants, utils

    original = getattr(utils, "set_sigterm_handler", None)
    crash_handler_off = getattr(ray_constants, "RAY_DISABLE_FAILURE_SIGNAL_HANDLER", None)
    if not keep or not _applies("keeping the SIGTERM handler through ray.init", callable(original),
                                "ray.init's handler stands until it returns"):
        yield
        return
    utils.set_sigterm_handler = lambda handler: None
    if crash_handler_off is not None:
        ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True
    try:
        yield
    finally:
        utils.set_sigterm_handler = original
        if crash_handler_off is not None:
            ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = crash_handler_off


# Python processes Ray starts on a head node that a local paramaudit Ray never uses (about
# 3 CPU-s between them while a run starts, on a machine where start-up is CPU-bound): the
# autoscaler monitor (nothing to autoscale), the log monitor (log_to_driver=False: nobody reads
# what it streams) and the API server, alias dashboard head (no dashboard or job API: ShadowRay;
# it is also the process that probes cloud metadata addresses). Ray starts the API server with
# raise_on_failure=False for include_dashboard=False: a node without one is a state Ray expects.
UNUSED_HEAD_PROCESSES = ("start_monitor", "start_log_monitor", "start_api_server")


@contextmanager
def lean_local_node(node_ip: str) -> Iterator[None]:
    """While ``ray.init`` starts the local node: ``node_ip`` kept, none of the unused processes.

    - Ray rewrites the node IP 127.0.0.1 to eth0's address (``services.resolve_ip_for_localhost``),
      with no setting to keep it; held back here for ``node_ip``.
    - ``UNUSED_HEAD_PROCESSES`` (``ray._private.node.Node`` methods) are not started: Ray has no
      setting to leave out the monitors, and include_dashboard=False still starts the API server.
    - Ray decides whether its dashboard agent loads its full module set by importing aiohttp and
      the dashboard's other optional dependencies in this process (about 0.5 CPU-s); answering
      "not installed" (``utils.get_dashboard_dependency_error``) gives the agent Ray's minimal
      mode, the mode every ``ray[tune]`` install without ``ray[default]`` runs in.
    Loud: without it the local Ray listens on every interface and probes cloud metadata.
    """
    from ray._private import node, services, utils

    present = (all(callable(getattr(node.Node, name, None)) for name in UNUSED_HEAD_PROCESSES)
               and callable(getattr(services, "resolve_ip_for_localhost", None))
               and callable(getattr(utils, "get_dashboard_dependency_error", None)))
    _require("the loopback-only local Ray start", present,
             "keep it on loopback, with no dashboard and no metadata probe")
    saved = {name: getattr(node.Node, name) for name in UNUSED_HEAD_PROCESSES}
    rewrite, check = services.resolve_ip_for_localhost, utils.get_dashboard_dependency_error
    services.resolve_ip_for_localhost = lambda host: host if host == node_ip else rewrite(host)
    utils.get_dashboard_dependency_error = lambda: ImportError("not used by paramaudit")
    for name in saved:
        setattr(node.Node, name, _not_started)
    try:
        yield
    finally:
        services.resolve_ip_for_localhost = rewrite
        utils.get_dashboard_dependency_error = check
        for name, method in saved.items():
            setattr(node.Node, name, method)


def _not_started(*_: Any, **__: Any) -> None:
    """Stands in for a Ray ``Node.start_*`` method while the local node starts."""


# -- Ray Tune --------------------------------------------------------------------------------------
@contextmanager
def plain_trial_actors(enabled: bool) -> Iterator[None]:
    """With ``enabled`` (a local Ray this process started): trial actors start on its warm workers.

    Tune gives every trainable actor a runtime env: ``PL_DISABLE_FORK=1`` (for PyTorch Lightning)
    plus any of a list of the driver's variables (AWS keys, Ray Train settings) that are set. An
    actor whose runtime env differs from the idle workers' never gets one of them: Ray starts a
    fresh process for it (Python, Ray, torch and the trainable imported again: 3-5 s a trial slot
    here). On a Ray this process started, every worker already has the driver's environment
    (and PL_DISABLE_FORK, from ray_environment), so while the search runs Tune's two lists
    (``ray.tune.execution.class_cache``, not public) are emptied, then restored: Tune has no
    setting for this. On a cluster, Tune's defaults stand. Skipped with a warning where
    missing: trials start cold workers, slower, not wrong.
    """
    if not enabled:
        yield
        return
    from ray.tune.execution import class_cache

    defaults = getattr(class_cache, "DEFAULT_ENV_VARS", None)
    propagated = getattr(class_cache, "ENV_VARS_TO_PROPAGATE", None)
    if not _applies("trial actors without Tune's runtime env",
                    isinstance(defaults, dict) and isinstance(propagated, set),
                    "each trial slot starts a cold worker"):
        yield
        return
    assert isinstance(defaults, dict) and isinstance(propagated, set)
    saved_defaults, saved_propagated = dict(defaults), set(propagated)
    defaults.clear()
    propagated.clear()
    try:
        yield
    finally:
        defaults.update(saved_defaults)
        propagated.update(saved_propagated)


REUSE_METHOD = "_maybe_reuse_cached_actor"  # TuneController's, replaced by started_actors_kept
# what the replacement reads on the TuneController (set in its __init__)
CONTROLLER_ATTRIBUTES = ("_trial_to_actor", "_resetting_trials", "_actor_manager")


@contextmanager
def started_actors_kept() -> Iterator[None]:
    """Keep Tune from stopping a trial's actor that already holds a worker, to give it a cached one.

    With actor reuse, Tune caches the actor of a trial that finished and hands it to a trial
    still waiting for its own actor, stopping that one. When the waiting actor is only a request
    for resources, that saves starting it; but when it already got them, it is being created in
    an idle, pre-warmed worker, and stopping it ends that worker's process: a later actor needs a
    new process (Python, torch and Ray Tune imported again, 3-5 s here) and the search runs a
    slot short meanwhile. Measured on 32 tiny trials: in about 1 run in 4, that doubled the
    per-trial overhead (0.1 to 0.3 s). While the search runs, such a trial keeps its actor and
    the cached one goes to the next trial. Tune has no setting for this: its private
    ``TuneController._maybe_reuse_cached_actor`` is wrapped. Skipped with a warning where
    missing: Tune's own reuse, slower at times, not wrong.
    """
    from ray.tune.execution.tune_controller import TuneController

    reuse = getattr(TuneController, REUSE_METHOD, None)
    if not _applies("keeping started trial actors", callable(reuse),
                    "Tune may stop an actor that already holds a warm worker"):
        yield
        return
    assert reuse is not None

    def keep_started(self: Any, trial: Any) -> bool:
        actor = self._trial_to_actor.get(trial)
        if (actor is not None and trial not in self._resetting_trials
                and self._actor_manager.is_actor_started(actor)):
            return False
        return bool(reuse(self, trial))

    setattr(TuneController, REUSE_METHOD, keep_started)
    try:
        yield
    finally:
        setattr(TuneController, REUSE_METHOD, reuse)


def use_live_callbacks(tuner: Any, callbacks: list[Any]) -> None:
    """Give a restored Tuner these callbacks instead of the unpickled copies it saved.

    ``Tuner.restore`` takes no run config and Tuner has no public setter for its callbacks; the
    restored copies of the MLflow logger would write nowhere the search reads. The run config
    lives on ``tuner._local_tuner._run_config``. Loud: a resumed search without its live logger
    would log no trial.
    """
    local = getattr(tuner, "_local_tuner", None)
    run_config = getattr(local, "_run_config", None)
    _require("--resume (the restored search's callbacks)", hasattr(run_config, "callbacks"),
             "give a restored search its MLflow logger")
    run_config.callbacks = callbacks


# -- Ray Tune's log lines --------------------------------------------------------------------------
# the internal modules whose loggers the filters below sit on (logging.getLogger(__name__) there)
STATE_LOGGER = "ray.tune.execution.experiment_state"
ANALYSIS_LOGGER = "ray.tune.analysis.experiment_analysis"
NO_RESULT_FILES = "Failed to fetch metrics for"  # the start of the warning NoResultFiles drops


class StateCopyRace(logging.Filter):
    """Ray Tune's experiment-state copy racing Tune's own temporary file: one line, no traceback.

    Tune saves its search state with a temporary file renamed into place, while a background
    copy of the same folder to the storage path may still run; the copy then finds the
    temporary file gone and Tune logs an ERROR with a traceback. The state on storage is
    complete again at the next save (every step here, and a final save Tune waits for).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the race's ERROR as a one-line WARNING; pass every record on."""
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, FileNotFoundError) and "-tmp-" in str(exc):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args, record.exc_info = (
                "Ray Tune: one copy of the search state to storage raced a temporary file; "
                "the next save copies it whole", None, None)
        return True


class NoResultFiles(logging.Filter):
    """Drops Tune's warning that its per-trial result files are missing: they are not written.

    At the end of a search Tune reads every trial's result.json or progress.csv into a data frame
    for its ExperimentAnalysis, which paramaudit does not use (a trial's results reach it through
    its callback, and MLflow); with those files off (TUNE_DISABLE_AUTO_CALLBACK_LOGGERS, see
    ray_environment) Tune warns once per search with a line for every trial.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False for that warning alone."""
        return not str(record.msg).startswith(NO_RESULT_FILES)


def quiet_tune() -> None:
    """Install the two filters above on Tune's internal loggers (once).

    Tune has no setting for either line. The filters match Tune's internal logger names and
    message text; skipped with a warning on an untested Ray, where the same text may mean
    something else (an ERROR turned into a WARNING must be one that was checked).
    """
    if not _applies("Ray Tune's log filters", True, "Tune's own log lines stand"):
        return
    for name, kind in ((STATE_LOGGER, StateCopyRace), (ANALYSIS_LOGGER, NoResultFiles)):
        log = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in log.filters):
            log.addFilter(kind())
