"""Ray Tune search: the trainable, the search space, algorithms, schedulers, and Ray itself.

The local Ray instance stays on loopback, has no dashboard or job API (ShadowRay,
CVE-2023-48022), and never probes cloud metadata addresses:
- Ray's gRPC servers (GCS, raylet, workers, agents) listen on every interface unless the node IP
  is exactly 127.0.0.1, and ``ray.init`` rewrites 127.0.0.1 to the machine's eth0 address; the
  local start keeps 127.0.0.1 by holding back that rewrite for the duration of ``ray.init``.
- Ray's dashboard head (its API server) probes cloud metadata addresses at every start, even
  with usage stats off; the local start does not start that process at all (_lean_local_node).
  A cluster started by hand (``ray start``) does start it: it skips the probe only when
  ``~/ray_bootstrap_config.yaml`` exists, which ``ray_home()`` provides as a HOME to start it with.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from paramaudit.config import PipelineConfig, RayConfig, SearchConfig, resolve_hyperparameters
from paramaudit.environment import QUIET_DEFAULTS
from paramaudit.overfit import Curves, assess
from paramaudit.tracking import redact_text
from paramaudit.worker_ready import READY_DIR_ENV

LOCAL_NODE_IP = "127.0.0.1"
LOOPBACK_NODE_IP = "127.0.0.2"  # for clusters started by hand on this machine (ray start)
# what every trial imports (torch._dynamo: torch's optimizers import it when first built);
# scikit-learn only when a trial refits preprocessing, so not here
WORKER_PRELOAD = ("paramaudit.worker_start",  # first: pauses the GC for the imports
                  "torch", "torch._dynamo", "ray.tune", "paramaudit.models", "paramaudit.training",
                  "paramaudit.tuning", "paramaudit.worker_ready")  # last: marks the worker warm
METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


class SearchFailedError(RuntimeError):
    """No trial of the search finished."""


def ray_environment() -> dict[str, str]:
    """Variables that keep Ray quiet and local: no usage stats, no token file, no metadata probe."""
    return {
        **{k: v for k, v in QUIET_DEFAULTS.items() if k.startswith("RAY_")},
        "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
        "RAY_DEDUP_LOGS": "0",
        "TUNE_DISABLE_STRICT_METRIC_CHECKING": "0",
        "RAY_AIR_NEW_OUTPUT": "0",
        "RAY_TRAIN_V2_ENABLED": "0",
        # Tune's own per-trial result files (result.json, progress.csv, TensorBoard events):
        # paramaudit reads a trial's results from its callback and writes them to MLflow, so
        # these would only be written, on Tune's loop, at every report of every trial
        "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
        # save the search state at every step, so --resume after a crash reruns no finished trial
        "TUNE_GLOBAL_CHECKPOINT_S": "0",
        # Tune sets this on each trial actor (for PyTorch Lightning); set here, Ray's own
        # processes inherit it and the actors need no runtime env of their own
        "PL_DISABLE_FORK": "1",
    }


# the Ray the outermost ray_session opened: what it connected to ("local" or the cluster's
# address, for nested sessions to report); and, for a local Ray this process started (whose
# workers inherit our environment), how many workers it pre-started and where they say they
# are warm
_LOCAL_RAY: dict[str, Any] = {"address": None, "started": False, "workers": 0,
                              "ready_dir": None}


def ray_home() -> Path:
    """The HOME Ray's processes see: holds the empty bootstrap file that disables the probe."""
    home = Path(tempfile.gettempdir()) / f"paramaudit-{os.getuid()}" / "ray-home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "ray_bootstrap_config.yaml").touch()
    return home


def _sigterm_as_sigint(*_: Any) -> None:
    signal.raise_signal(signal.SIGINT)


@contextmanager
def _sigterm_as_interrupt(in_main: bool, previous: Any) -> Iterator[None]:
    """While Ray is up, SIGTERM stops the search as Ctrl-C does; the handlers are restored after.

    Under ``paramaudit run`` (``previous`` is paramaudit.stopping's handler) that handler keeps
    both signals and gives a stop during the search to Tune itself (Tune's SIGUSR1 stop), so
    Tune's own SIGINT handler is switched off (TUNE_DISABLE_SIGINT_HANDLER): it would take a
    Ctrl-C that the CLI must see to bound the stop. Elsewhere (a flow run by a Prefect worker, a
    test) SIGTERM becomes SIGINT: ray.init turns SIGTERM into sys.exit, which can land inside
    Ray's C code; as SIGINT, Tune stops its trials gracefully and the search ends as interrupted
    (its runs KILLED). Nested sessions set it again: a Prefect flow run installs its own handler
    between the CLI's session and the flow's. Tune leaves its handlers on SIGINT and SIGUSR1
    after a search: restored here too, or a later Ctrl-C would go to a search long finished.
    """
    from paramaudit import stopping

    if not in_main:
        yield
        return
    kept = {s: signal.getsignal(s) for s in (signal.SIGINT, getattr(signal, "SIGUSR1", None)) if s}
    managed = stopping.is_handler(previous)
    tune_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    if managed:
        signal.signal(signal.SIGTERM, previous)  # ray.init may have put its own there
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    else:
        signal.signal(signal.SIGTERM, _sigterm_as_sigint)
    try:
        yield
    finally:
        for sig, handler in kept.items():
            if handler is not None:
                signal.signal(sig, handler)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if managed:
            if tune_env is None:
                os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
            else:
                os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = tune_env


@contextmanager
def _stop_ends(managed: bool) -> Iterator[None]:
    """With ``managed``: after a stop signal, the block ends with KeyboardInterrupt (see
    ray_session), its own error chained."""
    from paramaudit import stopping

    try:
        yield
    except Exception as err:
        if managed and stopping.requested():
            raise KeyboardInterrupt("interrupted") from err
        raise
    if managed and stopping.requested():
        raise KeyboardInterrupt("interrupted")


def _shutdown_ray(in_main: bool) -> None:
    """ray.shutdown, whole (a stop waits for it), then Python's SIGTERM handler put back.

    Ray's core worker, on shutdown, resets SIGTERM to the system default behind Python's back
    (it had put its crash handler there): Python still reports its handler, but the next SIGTERM
    would kill the process outright (exit -15), with no cleanup and no line.
    """
    import ray

    from paramaudit import stopping

    with stopping.shielded():
        ray.shutdown()
    handler = signal.getsignal(signal.SIGTERM) if in_main else None
    if handler is not None:
        signal.signal(signal.SIGTERM, handler)


@contextmanager
def _ray_keeps_sigterm_handler(keep: bool) -> Iterator[None]:
    """With ``keep``: ray.init leaves the SIGTERM handler as it is (paramaudit.stopping's).

    ray.init installs two: a Python one that calls sys.exit wherever the main thread is (exit
    code 15, a node half started, an exit that can land in the middle of an import), and, in
    the driver's core worker, a C++ crash handler that prints a stack dump on SIGTERM before
    anything else runs and that Ray's shutdown replaces with the system default. The CLI's
    handler raises only where that is safe, and the session stops what had started. Ray has no
    setting for the first; ray.init calls ``ray._private.utils.set_sigterm_handler`` (Ray
    2.60), held back here. The second is Ray's RAY_DISABLE_FAILURE_SIGNAL_HANDLER, read when Ray
    is imported: set on ``ray._private.ray_constants`` for this driver only (its workers keep
    their crash handler). Where either is missing (another Ray), Ray's stands and the session
    puts the CLI's back once ray.init returns.
    """
    from ray._private import ray_constants, utils

    original = getattr(utils, "set_sigterm_handler", None)
    crash_handler_off = getattr(ray_constants, "RAY_DISABLE_FAILURE_SIGNAL_HANDLER", None)
    if not keep or original is None:
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
_UNUSED_HEAD_PROCESSES = ("start_monitor", "start_log_monitor", "start_api_server")


@contextmanager
def _lean_local_node() -> Iterator[None]:
    """While ``ray.init`` starts the local node: loopback only, none of the unused processes.

    - Ray rewrites the node IP 127.0.0.1 to eth0's address (Ray 2.x ``services.py``); held back
      here.
    - ``_UNUSED_HEAD_PROCESSES`` are not started.
    - Ray decides whether its dashboard agent loads its full module set by importing aiohttp and
      the dashboard's other optional dependencies in this process (about 0.5 CPU-s); answering
      "not installed" gives the agent Ray's minimal mode, the mode every ``ray[tune]`` install
      without ``ray[default]`` runs in.
    """
    from ray._private import node, services, utils

    saved = {name: getattr(node.Node, name) for name in _UNUSED_HEAD_PROCESSES}
    rewrite, check = services.resolve_ip_for_localhost, utils.get_dashboard_dependency_error
    services.resolve_ip_for_localhost = (
        lambda host: host if host == LOCAL_NODE_IP else rewrite(host))
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


@contextmanager
def ray_session(cfg: RayConfig, slots: int | None = None) -> Iterator[dict[str, Any]]:
    """Connect to ``cfg.address`` / RAY_ADDRESS, or start a local loopback Ray; stop what we start.

    A local Ray gets ``cfg.num_cpus`` CPUs, else as many as the machine has, at most ``slots``
    (the trials the search can run at once: trial_slots): each CPU holds a warm idle worker.

    Under ``paramaudit run`` a stop signal (paramaudit.stopping) that arrived during the session
    ends it with KeyboardInterrupt, also when what it wraps returned or failed meanwhile (a stop
    that Tune took before its first trial started would surface as a search with no trial
    finished, and the parent run would end FAILED instead of KILLED).
    """
    import ray

    from paramaudit import stopping

    for key, value in ray_environment().items():
        os.environ.setdefault(key, value)  # a user's own setting wins
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    in_main = threading.current_thread() is threading.main_thread()
    previous_sigterm = signal.getsignal(signal.SIGTERM) if in_main else None
    managed = in_main and stopping.is_handler(previous_sigterm)
    if ray.is_initialized():
        # started by the caller (the CLI starts Ray while Prefect's server boots): theirs to stop
        with _sigterm_as_interrupt(in_main, previous_sigterm), _stop_ends(managed):
            yield {"address": _LOCAL_RAY["address"] or "already running", "started": False,
                   "reused": True, "cpus": int(ray.cluster_resources().get("CPU", 1))}
        return
    if address and address != "local":
        host = address.removeprefix("ray://").rsplit(":", 1)[0]
        # a cluster on this machine's loopback: the driver must claim the same loopback address,
        # or Ray picks eth0 and cannot find a raylet there
        extra = {"_node_ip_address": host} if host.startswith("127.") else {}
        try:
            with _ray_keeps_sigterm_handler(managed):
                ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False,
                         **extra)
        except BaseException:
            _shutdown_ray(in_main)  # a connection cut short by a stop or an error
            raise
        started = False
    else:
        # a stale RAY_ADDRESS or cluster file must not hijack the embedded instance
        os.environ.pop("RAY_ADDRESS", None)
        ready_dir = tempfile.mkdtemp(prefix="paramaudit-ray-warm-")
        os.environ[READY_DIR_ENV] = ready_dir  # Ray's processes inherit it; see worker_ready
        num_cpus = cfg.num_cpus or min(os.cpu_count() or 1, slots or os.cpu_count() or 1)
        try:
            with _lean_local_node(), _ray_keeps_sigterm_handler(managed):
                ray.init(
                    address="local",
                    num_cpus=num_cpus,
                    object_store_memory=cfg.object_store_memory or 200 * 1024 * 1024,
                    include_dashboard=False,
                    _node_ip_address=LOCAL_NODE_IP,
                    logging_level=logging.WARNING,
                    log_to_driver=False,
                    # Ray starts one idle worker per CPU at once; with these imported there,
                    # while the driver is still setting up, a trial's actor starts warm
                    # (_plain_trial_actors)
                    _system_config={"preload_python_modules": list(WORKER_PRELOAD),
                                    "kill_idle_workers_interval_ms": 0,
                                    "enable_worker_prestart": True},
                )
        except BaseException:
            # a start cut short by a stop or an error: stop what had started (processes Ray had
            # not yet recorded die with this process; the CLI stops them at once)
            _shutdown_ray(in_main)
            shutil.rmtree(ready_dir, ignore_errors=True)
            os.environ.pop(READY_DIR_ENV, None)
            raise
        _LOCAL_RAY.update(started=True, workers=num_cpus, ready_dir=ready_dir)
        started = True
    _LOCAL_RAY["address"] = address or "local"
    try:
        with _sigterm_as_interrupt(in_main, previous_sigterm), _stop_ends(managed):
            yield {"address": address or "local", "started": started,
                   "cpus": int(ray.cluster_resources().get("CPU", 1))}
    finally:
        if started:
            _shutdown_ray(in_main)  # half a shutdown would leave Ray's processes running
            shutil.rmtree(_LOCAL_RAY["ready_dir"], ignore_errors=True)
            os.environ.pop(READY_DIR_ENV, None)
        _LOCAL_RAY.update(address=None, started=False, workers=0, ready_dir=None)


class _StateCopyRace(logging.Filter):
    """Ray Tune's experiment-state copy racing Tune's own temporary file: one line, no traceback.

    Tune saves its search state with a temporary file renamed into place, while a background
    copy of the same folder to the storage path may still run; the copy then finds the
    temporary file gone and Tune logs an ERROR with a traceback. The state on storage is
    complete again at the next save (every step here, and a final save Tune waits for).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, FileNotFoundError) and "-tmp-" in str(exc):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args, record.exc_info = (
                "Ray Tune: one copy of the search state to storage raced a temporary file; "
                "the next save copies it whole", None, None)
        return True


class _NoResultFiles(logging.Filter):
    """Drops Tune's warning that its per-trial result files are missing: they are not written.

    At the end of a search Tune reads every trial's result.json or progress.csv into a data frame
    for its ExperimentAnalysis, which paramaudit does not use (a trial's results reach it through
    its callback, and MLflow); with those files off (TUNE_DISABLE_AUTO_CALLBACK_LOGGERS, see
    ray_environment) Tune warns once per search with a line for every trial.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to fetch metrics for")


def _quiet_tune() -> None:
    """Install the two filters above on Tune's loggers (once)."""
    for name, kind in (("ray.tune.execution.experiment_state", _StateCopyRace),
                       ("ray.tune.analysis.experiment_analysis", _NoResultFiles)):
        log = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in log.filters):
            log.addFilter(kind())


@contextmanager
def _plain_trial_actors() -> Iterator[None]:
    """Let Tune's trial actors start on the idle, pre-warmed workers of a local Ray.

    Tune gives every trainable actor a runtime env: ``PL_DISABLE_FORK=1`` (for PyTorch Lightning)
    plus any of a list of the driver's variables (AWS keys, Ray Train settings) that are set. An
    actor whose runtime env differs from the idle workers' never gets one of them: Ray starts a
    fresh process for it (Python, Ray, torch and the trainable imported again: 3-5 s a trial slot
    here). On a Ray this process started, every worker already has the driver's environment
    (and PL_DISABLE_FORK, from ray_environment), so while the search runs Tune's two lists are
    emptied (it has no setting for this), then restored. On a cluster, Tune's defaults stand.
    """
    from ray.tune.execution import class_cache

    defaults = getattr(class_cache, "DEFAULT_ENV_VARS", None)
    propagated = getattr(class_cache, "ENV_VARS_TO_PROPAGATE", None)
    if not (_LOCAL_RAY["started"] and isinstance(defaults, dict)
            and isinstance(propagated, set)):
        yield
        return
    saved_defaults, saved_propagated = dict(defaults), set(propagated)
    defaults.clear()
    propagated.clear()
    try:
        yield
    finally:
        defaults.update(saved_defaults)
        propagated.update(saved_propagated)


@contextmanager
def _started_actors_kept() -> Iterator[None]:
    """Keep Tune from stopping a trial's actor that already holds a worker, to give it a cached one.

    With actor reuse, Tune caches the actor of a trial that finished and hands it to a trial
    still waiting for its own actor, stopping that one. When the waiting actor is only a request
    for resources, that saves starting it; but when it already got them, it is being created in
    an idle, pre-warmed worker, and stopping it ends that worker's process: a later actor needs a
    new process (Python, torch and Ray Tune imported again, 3-5 s here) and the search runs a
    slot short meanwhile. Measured on 32 tiny trials: in about 1 run in 4, that doubled the
    per-trial overhead (0.1 to 0.3 s). While the search runs, such a trial keeps its actor and
    the cached one goes to the next trial. Tune has no setting for this.
    """
    from ray.tune.execution.tune_controller import TuneController

    name = "_maybe_reuse_cached_actor"  # swapped like _lean_local_node's: setattr, restored
    reuse = getattr(TuneController, name)

    def keep_started(self: Any, trial: Any) -> bool:
        actor = self._trial_to_actor.get(trial)
        if (actor is not None and trial not in self._resetting_trials
                and self._actor_manager.is_actor_started(actor)):
            return False
        return bool(reuse(self, trial))

    setattr(TuneController, name, keep_started)
    try:
        yield
    finally:
        setattr(TuneController, name, reuse)


def wait_for_warm_workers(wanted: int | None = None, timeout: float = 60.0) -> float:
    """On a Ray this process started: wait until its pre-started workers finished their imports.

    Ray Tune starts a trial on the first actor that is ready and stops an actor still starting
    when another frees up; on workers still importing, a search would lose them and start cold
    ones. ``wanted``: how many warm workers the search can use (at most the pre-started ones).
    Returns the seconds waited; after ``timeout`` the search goes ahead anyway (slower, not
    wrong).
    """
    folder = _LOCAL_RAY["ready_dir"]
    if not _LOCAL_RAY["started"] or not folder:
        return 0.0
    wanted = min(wanted or _LOCAL_RAY["workers"], _LOCAL_RAY["workers"])
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        warm = [p for p in Path(folder).iterdir() if Path("/proc", p.name).exists()] \
            if Path("/proc").is_dir() else list(Path(folder).iterdir())
        if len(warm) >= wanted:
            break
        time.sleep(0.05)
    return time.monotonic() - start


def planned_trials(cfg: PipelineConfig) -> int:
    """How many trials the search runs: ``search.trials``, times the grid's size for grid."""
    total = cfg.search.trials
    if cfg.search.algorithm == "grid":
        for value in searched_space(cfg).values():
            if isinstance(value, dict):
                total *= max(1, len(next(iter(value.values()))))
    return total


def trial_slots(cfg: PipelineConfig) -> int:
    """The most trials the search can run at once, whatever the number of CPUs."""
    total = planned_trials(cfg)
    return min(max_concurrent(cfg.search) or total, total)


# -- the search space ---------------------------------------------------------------------------
def searched_space(cfg: PipelineConfig) -> dict[str, Any]:
    """The hyperparameter space plus what else the search varies: the model and preprocessing."""
    space = dict(cfg.search.space)
    if isinstance(cfg.model, dict):
        space["model"] = cfg.model
    space.update({k: {"choice": v} for k, v in cfg.preprocess.searched().items()})
    return space


def param_space(search: SearchConfig, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Translate the config's space into Ray Tune domains (grid: grid_search over choices)."""
    from ray import tune

    space: dict[str, Any] = {}
    for name, value in {**search.space, **(extra or {})}.items():
        if not isinstance(value, dict):
            space[name] = value
            continue
        (kind, args), = value.items()
        if search.algorithm == "grid":
            space[name] = tune.grid_search(list(args))
        elif kind == "choice":
            space[name] = tune.choice(list(args))
        elif kind == "uniform":
            space[name] = tune.uniform(*args)
        elif kind == "loguniform":
            space[name] = tune.loguniform(*args)
        elif kind == "randint":
            space[name] = tune.randint(*args)
    return space


def divergence_rule(cfg: PipelineConfig) -> tuple[float, int]:
    """The divergence stop of trials and the final model (training.StopRule), from the audit's
    own divergence thresholds: the search stops what the verdict would call diverging."""
    return cfg.audit.divergence_tolerance, cfg.audit.divergence_epochs


def metric_mode(metric: str) -> str:
    """Whether the search metric is minimised (a loss) or maximised (an accuracy)."""
    return "min" if metric == "val_loss" else "max"


def max_concurrent(search: SearchConfig) -> int | None:
    """Trials the search algorithm runs at once: the setting, else 2 for bayes (TPE learns from
    finished trials, so it must not propose them all at once), else no limit (None)."""
    if search.max_concurrent:
        return search.max_concurrent
    return 2 if search.algorithm == "bayes" else None


def _search_alg(search: SearchConfig, seed: int, metric: str, mode: str) -> Any:
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    if search.algorithm == "bayes":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        alg = OptunaSearch(metric=metric, mode=mode,
                           sampler=optuna.samplers.TPESampler(seed=seed))
        return ConcurrencyLimiter(alg, max_concurrent=max_concurrent(search))
    return BasicVariantGenerator(random_state=seed, max_concurrent=max_concurrent(search) or 0)


def _scheduler(search: SearchConfig, max_epochs: int) -> Any:
    if search.scheduler == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="training_iteration", max_t=max_epochs,
        grace_period=min(search.grace_period, max_epochs),
        reduction_factor=search.reduction_factor,
    )


# -- the trainable (runs inside Ray workers) ------------------------------------------------------
def count_trainable_params(model_name: str, input_shape: tuple[int, ...], n_classes: int,
                           hp: Mapping[str, Any]) -> int:
    """Trainable parameters of a configuration, counted on the meta device (no memory)."""
    import torch

    from paramaudit.models import build_model

    with torch.device("meta"):
        model = build_model(model_name, input_shape, n_classes, **hp)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def over_budget(n_params: int, n_train: int, search: SearchConfig) -> str | None:
    """Why a configuration is too large for the parameter budget, or None."""
    if search.max_params is not None and n_params > search.max_params:
        return f"{n_params:,} trainable parameters > search.max_params {search.max_params:,}"
    per = n_params / max(n_train, 1)
    if search.max_params_per_sample is not None and per > search.max_params_per_sample:
        return (f"{per:.1f} trainable parameters per training sample > "
                f"search.max_params_per_sample {search.max_params_per_sample:g}")
    return None


PREPROCESSING_KEYS = ("scaler", "pca_components", "augment")


def trial_data(config: Mapping[str, Any], data: Mapping[str, Any], settings: Mapping[str, Any],
               ) -> tuple[list[tuple[tuple[Any, Any], tuple[Any, Any]]], tuple[int, ...]]:
    """The (train, val) pairs one trial trains on: one pair, or k folds with k-fold on.

    Preprocessing is refitted on each training part when the search varies it or k-fold is on,
    so no statistic of a val row ever reaches the scaler or PCA that transforms it.
    """
    import numpy as np

    pre = {**settings["preprocess"], **{k: config[k] for k in PREPROCESSING_KEYS if k in config}}
    shape = tuple(data["input_shape"])
    folds = settings.get("cv_folds")
    refit = folds or any(k in config for k in ("scaler", "pca_components"))
    if not refit:
        return [((data["x_train"], data["y_train"]), (data["x_val"], data["y_val"]))], shape
    from paramaudit.data import fit_preprocessor

    def prepared(x_fit: Any, y_fit: Any, x_val: Any, y_val: Any) -> tuple[Any, Any]:
        prep = fit_preprocessor(x_fit, pre["scaler"], pre.get("pca_components"), settings["seed"])
        return (prep.transform(x_fit), y_fit), (prep.transform(x_val), y_val)

    if not folds:
        pairs = [prepared(data["raw_train"], data["y_train"], data["raw_val"], data["y_val"])]
    else:
        from sklearn.model_selection import StratifiedKFold

        x_all = np.concatenate([data["raw_train"], data["raw_val"]])
        y_all = np.concatenate([data["y_train"], data["y_val"]])
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=settings["seed"])
        pairs = [prepared(x_all[tr], y_all[tr], x_all[va], y_all[va])
                 for tr, va in splitter.split(x_all, y_all)]
    if pre.get("pca_components") is not None:
        shape = (int(pairs[0][0][0].shape[1]),)  # PCA flattens: the model sees its components
    return pairs, shape


def trainable(config: dict[str, Any], data: dict[str, Any] | None = None,
              settings: dict[str, Any] | None = None) -> None:
    """One trial: build the model its hyperparameters describe, train, report every epoch."""
    import ray
    import torch
    from ray import tune

    from paramaudit.models import build_model
    from paramaudit.training import EpochTrainer, StopRule, fit_folds, save_best_state, train_epochs

    assert data is not None and settings is not None
    # one thread per trial: trials run side by side, and oversubscribed BLAS threads thrash
    torch.set_num_threads(1)
    node = ray.get_runtime_context().get_node_id()
    model_name = config.get("model", settings["model"])
    hp = resolve_hyperparameters(config, model_name)
    pairs, shape = trial_data(config, data, settings)
    n_params = count_trainable_params(model_name, shape, data["n_classes"], hp)
    reason = over_budget(n_params, settings["n_train"], settings["search"])
    if reason:
        tune.report({"val_loss": math.inf, "val_accuracy": 0.0, "train_loss": math.inf,
                     "train_accuracy": 0.0, "params_trainable": n_params, "skipped": 1,
                     "skip_reason": reason, "epoch": 0, "node_id": node})
        return
    augment = config.get("augment", settings["preprocess"].get("augment", False))
    augment_shape = shape if augment and len(shape) == 3 else None

    clock = {"last": time.perf_counter(), "train": 0.0}

    def report(epoch: int, metrics: dict[str, float], stop: tuple[str, str] | None = None,
               trainer: EpochTrainer | None = None) -> None:
        # seconds spent in training and evaluation, apart from Tune's own bookkeeping
        now = time.perf_counter()
        clock["train"] += now - clock["last"]
        result = {**metrics, "epoch": epoch + 1, "params_trainable": n_params, "skipped": 0,
                  "node_id": node, "train_seconds": clock["train"]}
        if stop is not None:
            result.update(stopped_by=stop[0], stop_reason=stop[1])
        if trainer is None:
            tune.report(result)
        else:
            # the trial's last epoch: its best weights go with it (a Tune checkpoint), so that
            # the final model can be these weights instead of a retraining that would repeat it
            with tempfile.TemporaryDirectory(prefix="paramaudit-trial-") as tmp:
                save_best_state(trainer, Path(tmp))
                tune.report(result, checkpoint=tune.Checkpoint.from_directory(tmp))
        clock["last"] = time.perf_counter()

    torch.manual_seed(settings["seed"])
    if len(pairs) == 1:
        model = build_model(model_name, shape, data["n_classes"], **hp)
        (train, val), = pairs
        # exactly what training.train_best does for the final model (same loop and StopRule)
        trainer = EpochTrainer(model, train, val, hp, seed=settings["seed"],
                               augment_shape=augment_shape, restore_best=True)
        rule = StopRule(settings["max_epochs"], settings["patience"], settings["divergence"])
        for epoch, metrics, stop in train_epochs(trainer, rule):
            report(epoch, metrics, stop, trainer if stop is not None else None)
    else:
        models = [build_model(model_name, shape, data["n_classes"], **hp) for _ in pairs]
        fit_folds(models, pairs, hp, max_epochs=settings["max_epochs"], seed=settings["seed"],
                  on_epoch=report, augment_shape=augment_shape)


# -- driver side: the MLflow logger ---------------------------------------------------------------
@dataclass
class TrialRecord:
    """What the driver learned of one trial."""

    trial_id: str
    number: int
    hyperparameters: dict[str, Any]
    run_id: str | None = None
    history: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METRICS})
    params_trainable: int | None = None
    status: str = "RUNNING"
    error: str | None = None
    stopped_by: str | None = None  # asha, divergence, early_stopping (None: the full budget)
    stop_reason: str | None = None
    skip_reason: str | None = None
    verdict: str | None = None
    # the Tune checkpoint the trial left at its last epoch: its best weights (final_from_state)
    checkpoint: str | None = None
    node_id: str | None = None
    worker_pid: int | None = None  # the Ray worker process that ran the trial
    fold_val_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0
    train_seconds: float = 0.0

    def best(self, metric: str, mode: str) -> float:
        values = [v for v in self.history.get(metric, []) if math.isfinite(v)]
        if not values:
            return math.inf if mode == "min" else -math.inf
        return min(values) if mode == "min" else max(values)

    def final(self, metric: str) -> float:
        values = self.history.get(metric) or [math.nan]
        return values[-1]

    def to_history(self) -> Any:
        """The trial's curves as a training.History (best epoch: the first lowest val loss)."""
        from paramaudit.training import History

        h = History(**{m: list(self.history[m]) for m in METRICS})
        h.best_epoch = int(np.argmin(h.val_loss)) if h.val_loss else -1
        h.stopped_by, h.stop_reason = self.stopped_by or "max_epochs", self.stop_reason
        h.stopped_early = self.stopped_by is not None
        return h


def trial_run_name(number: int, hp: Mapping[str, Any]) -> str:
    """A run name that says what the trial tried."""
    bits = [f"trial-{number:03d}"]
    if "model" in hp:
        bits.append(str(hp["model"]))
    if "num_layers" in hp and "hidden_size" in hp:
        bits.append(f"{hp['num_layers']}x{hp['hidden_size']}")
    if "optimizer" in hp:
        bits.append(str(hp["optimizer"]))
    if "learning_rate" in hp:
        bits.append(f"lr={float(hp['learning_rate']):.2g}")
    return " ".join(bits)


def records_from_mlflow(tracker: Any, parent_id: str) -> dict[str, TrialRecord]:
    """Trials an interrupted search already logged, keyed by Tune trial id (for --resume)."""
    records: dict[str, TrialRecord] = {}
    for run in tracker.child_runs(parent_id):
        tags = run.data.tags
        if "trial_id" not in tags:
            continue
        rec = TrialRecord(tags["trial_id"], int(tags.get("trial_number", 0)),
                          _typed_params(run.data.params), run_id=run.info.run_id)
        rec.status = tags.get("trial_status", "RUNNING")
        rec.verdict, rec.stopped_by = tags.get("overfit_verdict"), tags.get("stopped_by")
        rec.skip_reason, rec.error = tags.get("skip_reason"), tags.get("error")
        rec.stop_reason, rec.checkpoint = tags.get("stop_reason"), tags.get("final_state")
        if "params_trainable" in run.data.metrics:
            rec.params_trainable = int(run.data.metrics["params_trainable"])
        if rec.status == "TERMINATED":
            for m in METRICS:
                hist = tracker.client.get_metric_history(run.info.run_id, m)
                rec.history[m] = [h.value for h in sorted(hist, key=lambda h: h.step)]
        records[rec.trial_id] = rec
    return records


def _typed_params(params: Mapping[str, str]) -> dict[str, Any]:
    import yaml

    return {k: yaml.safe_load(v) for k, v in params.items()}


def make_trial_logger(tracker: Any, parent_id: str, cfg: PipelineConfig, n_train: int,
                      say: Callable[[str], None], existing: dict[str, TrialRecord] | None = None) -> Any:
    """A Ray Tune callback, run on the driver, that mirrors each trial into a nested MLflow run.

    A trial's metric histories are written once, when it ends: a trial restarted by --resume
    then never leaves half a history (or a second run) behind in MLflow. The writes run in
    order on a background thread (WriteBehind), so Tune's loop and the trials never wait for
    the store; ``flush`` before reading the records' run ids, ``close`` when the search ends.
    """
    from ray.tune import Callback

    from paramaudit.tracking import WriteBehind

    records: dict[str, TrialRecord] = dict(existing or {})
    started: dict[str, float] = {}
    replays: set[str] = set()
    unwritten: set[str] = set()  # trials whose final record is queued, not yet in MLflow
    writer = WriteBehind()
    planned = planned_trials(cfg)  # for the progress lines: a grid runs trials x its cells

    class TrialLogger(Callback):
        def __init__(self) -> None:
            self.records = records
            self.started = started  # trials Tune started in this process

        def flush(self) -> None:
            """Wait for the queued MLflow writes; raise the first that failed."""
            writer.flush()

        def close(self) -> None:
            """Finish the queued writes and stop the writer thread (flush raises errors)."""
            writer.close()

        def close_open(self, status: str, reason: str) -> None:
            """End the runs of trials still running (the search was interrupted or failed).

            A write that failed in the queue does not stop this: every run still open, those
            whose final record was lost with it too, is ended; then the first error is raised.
            """
            errors: list[Exception] = []
            try:
                writer.flush()
            except Exception as err:
                errors.append(err)
            for rec in records.values():
                lost = rec.trial_id in unwritten  # finished, but its record's write failed
                if rec.run_id is None or not (rec.status == "RUNNING" or lost):
                    continue
                end, why = status, reason
                if lost:
                    end = "FAILED"
                    why = "its record was not written to MLflow" + (
                        redact_text(f": {errors[0]}")[:1000] if errors else "")
                try:
                    tracker.set_tags(rec.run_id, {"trial_status": end, "error": why})
                    tracker.end_run(rec.run_id, end)
                except Exception as err:
                    errors.append(err)
                    continue
                rec.status = end
                unwritten.discard(rec.trial_id)
            if errors:
                raise errors[0]

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            started[trial.trial_id] = time.monotonic()
            old = records.get(trial.trial_id)
            if old is not None and old.status in ("TERMINATED", "SKIPPED", "ERROR"):
                # finished and logged before a crash that beat Tune's state save: keep that
                # record and its run; the rerun's results are not logged again
                replays.add(trial.trial_id)
                return
            if old is not None and old.run_id is not None:
                # an unfinished trial of an interrupted search: same child run, fresh history
                old.history = {m: [] for m in METRICS}
                old.status = "RUNNING"
                run_id = old.run_id
                writer.submit(lambda: tracker.client.update_run(run_id, status="RUNNING"))
                return
            hp = dict(trial.config)
            rec = TrialRecord(trial.trial_id, max((r.number for r in records.values()),
                                                  default=0) + 1, hp)
            records[trial.trial_id] = rec

            def open_run() -> None:  # on the writer thread; its later writes queue behind it
                rec.run_id = tracker.start_run(
                    trial_run_name(rec.number, hp),
                    tags={"paramaudit.kind": "trial", "trial_id": trial.trial_id,
                          "trial_number": str(rec.number)},
                    parent_id=parent_id,
                )
                tracker.log_params(rec.run_id, hp)

            writer.submit(open_run)

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                            **info: Any) -> None:
            rec = records.get(trial.trial_id)
            if rec is None or trial.trial_id in replays:
                return
            rec.node_id = result.get("node_id") or rec.node_id
            rec.worker_pid = result.get("pid") or rec.worker_pid  # Tune adds it to every result
            rec.params_trainable = int(result.get("params_trainable", 0)) or rec.params_trainable
            if result.get("skipped"):
                rec.skip_reason = str(result.get("skip_reason"))
                return
            for m in METRICS:
                rec.history[m].append(float(result[m]))
            rec.train_seconds = float(result.get("train_seconds", rec.train_seconds))
            if result.get("stopped_by"):  # the trial's own StopRule ended it at this epoch
                rec.stopped_by, rec.stop_reason = result["stopped_by"], result.get("stop_reason")
            rec.fold_val_accuracy = [float(v) for k, v in sorted(result.items())
                                     if k.startswith("fold") and k.endswith("_val_accuracy")]

        def _finish(self, trial: Any, status: str, error: str | None = None) -> None:
            rec = records.get(trial.trial_id)
            if rec is None or trial.trial_id in replays:
                return
            rec.seconds = time.monotonic() - started.get(trial.trial_id, time.monotonic())
            rec.status, rec.error = status, error
            tags: dict[str, Any] = {"trial_status": status}
            epochs = len(rec.history["val_loss"])
            steps = [({m: rec.history[m][step] for m in METRICS}, step + 1)
                     for step in range(epochs)]
            if rec.skip_reason:
                tags.update(skipped="true", skip_reason=rec.skip_reason)
                rec.status = "SKIPPED"
                tags["trial_status"] = "SKIPPED"
            elif error:
                tags["error"] = error
            elif epochs:
                if rec.stopped_by == "max_epochs":
                    rec.stopped_by = None  # it ran its whole budget
                elif rec.stopped_by is None and epochs < cfg.train.max_epochs:
                    rec.stopped_by = "asha"  # Tune stopped it: ASHA is the only stopper
                    rec.stop_reason = f"ASHA stopped it after {epochs} epochs"
                if rec.stopped_by:
                    tags.update(stopped_by=rec.stopped_by, stop_reason=rec.stop_reason)
                if rec.checkpoint:
                    tags["final_state"] = rec.checkpoint
                verdict = assess(Curves(**{m: rec.history[m] for m in METRICS}), cfg.audit,
                                 params_trainable=rec.params_trainable or 0, n_train=n_train,
                                 fold_scores=rec.fold_val_accuracy or None)
                rec.verdict = verdict.verdict
                tags.update(overfit_verdict=verdict.verdict, overfit_reasons=verdict.tag_text())
            summary = {"params_trainable": rec.params_trainable, "epochs": epochs,
                       "best_val_loss": rec.best("val_loss", "min"),
                       "best_val_accuracy": rec.best("val_accuracy", "max"),
                       "trial_seconds": rec.seconds}
            if rec.fold_val_accuracy:
                summary.update(cv_folds=len(rec.fold_val_accuracy),
                               cv_val_accuracy_std=float(np.std(rec.fold_val_accuracy)))
            end = "FAILED" if error else "FINISHED"

            def close_run() -> None:  # queued after open_run: rec.run_id is set by then
                # the history, the summary, then the tags (see Tracker.log_record)
                tracker.log_record(rec.run_id, [*steps, (summary, 0)], tags)
                tracker.end_run(rec.run_id, end)
                unwritten.discard(trial.trial_id)

            unwritten.add(trial.trial_id)
            writer.submit(close_run)
            if rec.skip_reason:
                what = f"skipped: {rec.skip_reason}"
            elif error:
                what = f"FAILED: {error.splitlines()[0][:200]}"
            else:
                what = (f"val_acc {rec.best('val_accuracy', 'max'):.4f} "
                        f"val_loss {rec.best('val_loss', 'min'):.4f} after {epochs} epochs"
                        + (f" (stopped by {rec.stopped_by})" if rec.stopped_by else ""))
            params = f"{rec.params_trainable:,}" if rec.params_trainable else "?"
            say(f"  trial {rec.number:>3}/{planned}  {params:>9} params  {what}")

        def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any,
                          **info: Any) -> None:
            rec = records.get(trial.trial_id)
            if rec is not None and trial.trial_id not in replays:
                rec.checkpoint = str(checkpoint.path)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any,
                              **info: Any) -> None:
            self._finish(trial, "TERMINATED")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._finish(trial, "ERROR", trial_error(trial))

    return TrialLogger()


def trial_error(trial: Any) -> str:
    """The one-line cause of a failed trial (the innermost exception), for its MLflow run."""
    import cloudpickle

    err: Any = None
    try:
        # Trial.handle_error writes the error to the trial's local folder before this callback
        # runs (pickled_error_file, error_file: public properties). Trial.get_pickled_error()
        # and Result.error read the copy synced to the storage path, which does not exist yet
        # here, and the ResultGrid comes only after the whole search.
        if trial.pickled_error_file and Path(trial.pickled_error_file).is_file():
            err = cloudpickle.loads(Path(trial.pickled_error_file).read_bytes())
        elif trial.error_file and Path(trial.error_file).is_file():
            err = Path(trial.error_file).read_text()
    except Exception:  # an unreadable error file must not break the search
        err = None
    while err is not None and getattr(err, "cause", None) is not None:
        err = err.cause  # RayTaskError wraps the trainable's own exception
    if err is None:
        text = "trial raised an error"
    elif isinstance(err, str):
        text = err
    else:
        text = f"{type(err).__name__}: {err}"
    text = redact_text(text)  # before it is cut: a cut URI would no longer match
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:1000] if lines else text


@dataclass
class SearchOutcome:
    """The search's result: the chosen hyperparameters and every trial's record."""

    best_hyperparameters: dict[str, Any]
    best_trial_id: str
    best_score: float
    metric: str
    trials: list[TrialRecord]
    seconds: float
    ray_start_seconds: float = 0.0
    worker_warmup_seconds: float = 0.0  # of ``seconds``: waiting for Ray's workers' imports

    def best_trial(self) -> TrialRecord:
        """The chosen trial's record."""
        return next(t for t in self.trials if t.trial_id == self.best_trial_id)


def search_state_dir(workdir: Path) -> Path:
    """Where Ray Tune keeps a pipeline run's search state (keyed by the MLflow parent run)."""
    return (workdir / "tune").resolve()


def run_search(splits: Any, cfg: PipelineConfig, tracker: Any, parent_id: str,
               storage: Path, say: Callable[[str], None] = print,
               resume: bool = False) -> SearchOutcome:
    """Run (or, with ``resume``, continue) the Ray Tune search; trials nest under ``parent_id``."""
    from ray import tune

    metric = cfg.search.metric
    mode = metric_mode(metric)
    n_train = len(splits.y_train)
    data = {
        "x_train": splits.x_train, "y_train": splits.y_train,
        "x_val": splits.x_val, "y_val": splits.y_val,
        "raw_train": splits.raw_train, "raw_val": splits.raw_val,
        "input_shape": tuple(splits.input_shape), "n_classes": splits.n_classes,
    }
    search = cfg.search
    settings = {"model": cfg.model if isinstance(cfg.model, str) else cfg.model["choice"][0],
                "seed": cfg.seed, "max_epochs": cfg.train.max_epochs, "n_train": n_train,
                "patience": cfg.train.patience, "divergence": divergence_rule(cfg),
                "search": search, "cv_folds": search.cv_folds,
                "preprocess": {"scaler": "standard", "pca_components": None, "augment": False,
                               **cfg.preprocess.fixed()}}
    existing = records_from_mlflow(tracker, parent_id) if resume else {}
    logger = make_trial_logger(tracker, parent_id, cfg, n_train, say, existing)
    extra = {k: v for k, v in searched_space(cfg).items() if k not in search.space}
    space = param_space(search, extra)
    # tune.with_parameters puts the arrays in the object store once, not per trial
    fn = tune.with_resources(tune.with_parameters(trainable, data=data, settings=settings),
                             {"cpu": 1})
    run_config = _run_config("search", storage, logger)
    started = time.monotonic()
    path = storage / "search"
    if resume and tune.Tuner.can_restore(str(path)):
        tuner = tune.Tuner.restore(str(path), trainable=fn, resume_unfinished=True,
                                   resume_errored=False, param_space=space)
        # the restored run config carries unpickled copies of our callbacks; use live ones
        # (Tuner has no public setter for this)
        tuner._local_tuner._run_config.callbacks = [logger]
        done = sum(r.status in ("TERMINATED", "SKIPPED", "ERROR") for r in existing.values())
        say(f"  resuming the search: {done} trial(s) already done")
    else:
        tuner = tune.Tuner(
            fn, param_space=space, run_config=run_config,
            tune_config=_tune_config(cfg, search.trials,
                                     _search_alg(search, cfg.seed, metric, mode)))
    _quiet_tune()
    warmup = wait_for_warm_workers(trial_slots(cfg))
    try:
        with _ending_open_runs(logger):
            with _plain_trial_actors(), _started_actors_kept():
                tuner.fit()
            if resume:
                _top_up(tune, fn, space, cfg, logger, storage, say)
            logger.flush()
        # Tune stops its own trials on Ctrl-C and returns: that is still an interruption
        if any(r.status == "RUNNING" for r in logger.records.values()):
            logger.close_open("KILLED", "interrupted")
            raise KeyboardInterrupt("the search was interrupted")
    finally:
        logger.close()
    records = sorted(logger.records.values(), key=lambda r: r.number)
    usable = [r for r in records if r.status == "TERMINATED" and r.history["val_loss"]]
    if not usable:
        errors = "; ".join(sorted({r.error or r.skip_reason or r.status for r in records}))[:500]
        raise SearchFailedError(f"no trial of {len(records)} finished: {errors}")
    sign = 1 if mode == "min" else -1
    best = min(usable, key=lambda r: (sign * r.best(metric, mode), r.number))
    chosen_model = best.hyperparameters.get("model", settings["model"])
    best_hp = resolve_hyperparameters(best.hyperparameters, chosen_model)
    if isinstance(cfg.model, dict):
        best_hp["model"] = chosen_model
    best_hp.update({k: best.hyperparameters[k] for k in PREPROCESSING_KEYS
                    if k in best.hyperparameters})
    return SearchOutcome(
        best_hyperparameters=best_hp, best_trial_id=best.trial_id,
        best_score=best.best(metric, mode), metric=metric, trials=records,
        seconds=time.monotonic() - started, worker_warmup_seconds=warmup,
    )


@contextmanager
def _ending_open_runs(logger: Any) -> Iterator[None]:
    """On any error or interruption inside: end the trials' MLflow runs still open, re-raise."""
    try:
        yield
    except Exception as err:
        logger.close_open("FAILED",
                          redact_text(f"search failed: {type(err).__name__}: {err}")[:1000])
        raise
    except BaseException:
        # not an Exception: Ctrl-C, SIGTERM (as the CLI or Prefect raises it), an exit
        logger.close_open("KILLED", "interrupted")
        raise


def _tune_config(cfg: PipelineConfig, num_samples: int, search_alg: Any) -> Any:
    """Tune's search settings: the metric, the scheduler, trial actors reused."""
    from ray import tune

    metric = cfg.search.metric
    # max_concurrent lives in the search algorithm (_search_alg): Tune ignores
    # max_concurrent_trials beside a searcher and says so
    return tune.TuneConfig(metric=metric, mode=metric_mode(metric), num_samples=num_samples,
                           search_alg=search_alg, reuse_actors=True,
                           scheduler=_scheduler(cfg.search, cfg.train.max_epochs))


def _run_config(name: str, storage: Path, logger: Any) -> Any:
    """Tune's run settings: state under ``storage/name``, our MLflow logger, no retries."""
    from ray import tune

    return tune.RunConfig(name=name, storage_path=str(storage), verbose=0, callbacks=[logger],
                          failure_config=tune.FailureConfig(max_failures=0))


def _top_up(tune: Any, fn: Any, space: dict[str, Any], cfg: PipelineConfig, logger: Any,
            storage: Path, say: Callable[[str], None]) -> None:
    """After a resumed search: run the trials Ray Tune's saved state lost, as new trials.

    Tune copies its search state to the storage path in the background while it keeps saving
    it; a process killed just after a copy that raced a save can leave the searcher's part
    missing, and the restored search then ends early. MLflow knows what finished: the trials
    still missing run now (drawn anew from the same space), in the same parent run. A trial
    that was running at the crash and that Tune no longer knows is ended KILLED.
    """
    from ray.tune.search import BasicVariantGenerator

    if any(r.status == "RUNNING" and r.trial_id in logger.started
           for r in logger.records.values()):
        return  # interrupted again: the caller reports it
    # what is still RUNNING now was running at the crash, and Tune did not bring it back
    logger.close_open("KILLED", "running at a crash; Ray Tune's saved state lost it")
    done = sum(r.status != "KILLED" for r in logger.records.values())
    missing = planned_trials(cfg) - done
    if missing <= 0:
        return
    say(f"  Ray Tune's saved state lost {missing} trial(s) of the search; running them now")
    search = cfg.search
    if search.algorithm == "grid":  # which cells are left is Tune's lost state: draw them
        space = param_space(search.model_copy(update={"algorithm": "random"}),
                            {k: v for k, v in searched_space(cfg).items()
                             if k not in search.space})
    # a random draw whatever the algorithm: the searcher's own state is what Tune lost
    draws = BasicVariantGenerator(random_state=cfg.seed + done,
                                  max_concurrent=max_concurrent(search) or 0)
    tuner = tune.Tuner(fn, param_space=space, tune_config=_tune_config(cfg, missing, draws),
                       run_config=_run_config(f"search-topup-{done}", storage, logger))
    with _plain_trial_actors(), _started_actors_kept():
        tuner.fit()


def trial_table(trials: list[TrialRecord]) -> list[dict[str, Any]]:
    """One row per trial for reports: hyperparameters, parameter count, scores, status."""
    rows = []
    for r in trials:
        row: dict[str, Any] = {"trial": r.number, "status": r.status,
                               "params_trainable": r.params_trainable,
                               "epochs": len(r.history["val_loss"])}
        row.update({f"hp_{k}": v for k, v in r.hyperparameters.items()})
        for m in METRICS:
            row[f"final_{m}"] = r.final(m) if r.history[m] else np.nan
        row["best_val_loss"] = r.best("val_loss", "min")
        row["best_val_accuracy"] = r.best("val_accuracy", "max")
        row["verdict"] = r.verdict
        row["stopped_by"] = r.stopped_by
        row["error"] = r.error or r.skip_reason
        row["node_id"] = r.node_id
        row["worker_pid"] = r.worker_pid
        rows.append(row)
    return rows
