"""Ray's lifecycle for a search: connect to a cluster or start a local Ray, and stop what we start.

The local Ray instance stays on loopback, has no dashboard or job API (ShadowRay,
CVE-2023-48022), and never probes cloud metadata addresses:
- Ray's gRPC servers (GCS, raylet, workers, agents) listen on every interface unless the node IP
  is exactly 127.0.0.1, and ``ray.init`` rewrites 127.0.0.1 to the machine's eth0 address; the
  local start keeps 127.0.0.1 by holding back that rewrite for the duration of ``ray.init``.
- Ray's dashboard head (its API server) probes cloud metadata addresses at every start, even
  with usage stats off; the local start does not start that process at all.
  Both are patches of Ray's internals: ray_internals.lean_local_node.
  A cluster started by hand (``ray start``) does start it: it skips the probe only when
  ``~/ray_bootstrap_config.yaml`` exists, which ``ray_home()`` provides as a HOME to start it with.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from paramaudit.config import RayConfig
from paramaudit.environment import LOOPBACK, QUIET_DEFAULTS
from paramaudit.search.ray_internals import (
    lean_local_node,
    node_ip_option,
    ray_keeps_sigterm_handler,
    warm_worker_options,
)
from paramaudit.worker_ready import READY_DIR_ENV

LOCAL_NODE_IP = LOOPBACK
# what every trial imports (torch._dynamo: torch's optimizers import it when first built);
# scikit-learn only when a trial refits preprocessing, so not here
WORKER_PRELOAD = ("paramaudit.worker_start",  # first: pauses the GC for the imports
                  "torch", "torch._dynamo", "ray.tune", "paramaudit.models", "paramaudit.training",
                  "paramaudit.search.trainable",
                  "paramaudit.worker_ready")  # last: marks the worker warm


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


def ray_home() -> Path:
    """The HOME Ray's processes see: holds the empty bootstrap file that disables the probe."""
    home = Path(tempfile.gettempdir()) / f"paramaudit-{os.getuid()}" / "ray-home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "ray_bootstrap_config.yaml").touch()
    return home


# the Ray the outermost ray_session opened: what it connected to ("local" or the cluster's
# address, for nested sessions to report); and, for a local Ray this process started (whose
# workers inherit our environment), how many workers it pre-started and where they say they
# are warm
_LOCAL_RAY: dict[str, Any] = {"address": None, "started": False, "workers": 0,
                              "ready_dir": None}


def local_ray_started() -> bool:
    """Whether the Ray in use is a local one this process started (its workers: our environment)."""
    return bool(_LOCAL_RAY["started"])


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


def _connect(address: str, in_main: bool, managed: bool) -> None:
    """Join the Ray cluster at ``address``."""
    import ray

    host = address.removeprefix("ray://").rsplit(":", 1)[0]
    # a cluster on this machine's loopback: the driver must claim the same loopback address,
    # or Ray picks eth0 and cannot find a raylet there
    extra = node_ip_option(host) if host.startswith("127.") else {}
    try:
        with ray_keeps_sigterm_handler(managed):
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, **extra)
    except BaseException:
        _shutdown_ray(in_main)  # a connection cut short by a stop or an error
        raise


def _start_local(cfg: RayConfig, slots: int | None, in_main: bool, managed: bool) -> None:
    """Start a local loopback Ray whose idle workers pre-import what every trial needs."""
    import ray

    # a stale RAY_ADDRESS or cluster file must not hijack the embedded instance
    os.environ.pop("RAY_ADDRESS", None)
    ready_dir = tempfile.mkdtemp(prefix="paramaudit-ray-warm-")
    os.environ[READY_DIR_ENV] = ready_dir  # Ray's processes inherit it; see worker_ready
    num_cpus = cfg.num_cpus or min(os.cpu_count() or 1, slots or os.cpu_count() or 1)
    try:
        with lean_local_node(LOCAL_NODE_IP), ray_keeps_sigterm_handler(managed):
            ray.init(
                address="local",
                num_cpus=num_cpus,
                object_store_memory=cfg.object_store_memory or 200 * 1024 * 1024,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
                **node_ip_option(LOCAL_NODE_IP),
                # Ray starts one idle worker per CPU at once; with these imported there, while
                # the driver is still setting up, a trial's actor starts warm
                **warm_worker_options(WORKER_PRELOAD),
            )
    except BaseException:
        # a start cut short by a stop or an error: stop what had started (processes Ray had
        # not yet recorded die with this process; the CLI stops them at once)
        _shutdown_ray(in_main)
        _drop_ready_dir(ready_dir)
        raise
    _LOCAL_RAY.update(started=True, workers=num_cpus, ready_dir=ready_dir)


def _drop_ready_dir(folder: str | None) -> None:
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
    os.environ.pop(READY_DIR_ENV, None)


def cluster_address(cfg: RayConfig) -> str | None:
    """The existing cluster the search joins (``ray.address`` / RAY_ADDRESS), or None: local."""
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    return None if not address or address == "local" else str(address)


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
    address = cluster_address(cfg)
    in_main = threading.current_thread() is threading.main_thread()
    previous_sigterm = signal.getsignal(signal.SIGTERM) if in_main else None
    managed = in_main and stopping.is_handler(previous_sigterm)
    if ray.is_initialized():
        # started by the caller (the CLI starts Ray while Prefect's server boots): theirs to stop
        with _sigterm_as_interrupt(in_main, previous_sigterm), _stop_ends(managed):
            yield {"address": _LOCAL_RAY["address"] or "already running", "started": False,
                   "reused": True, "cpus": int(ray.cluster_resources().get("CPU", 1))}
        return
    started = not (address and address != "local")
    if started:
        _start_local(cfg, slots, in_main, managed)
    else:
        _connect(str(address), in_main, managed)
    _LOCAL_RAY["address"] = address or "local"
    try:
        with _sigterm_as_interrupt(in_main, previous_sigterm), _stop_ends(managed):
            yield {"address": address or "local", "started": started,
                   "cpus": int(ray.cluster_resources().get("CPU", 1))}
    finally:
        if started:
            _shutdown_ray(in_main)  # half a shutdown would leave Ray's processes running
            _drop_ready_dir(_LOCAL_RAY["ready_dir"])
        _LOCAL_RAY.update(address=None, started=False, workers=0, ready_dir=None)


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
