"""The ``paramaudit`` command: ``run`` the pipeline (here), ``audit``, ``predict`` and ``history``
(app/commands.py); the arguments are app/cli_args.py's.

Exit codes: 0 done; 2 bad input or configuration (one line on stderr, no traceback unless
--debug); 3 the overfitting gate failed the run; 1 anything else; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import gc
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from paramaudit import stopping
from paramaudit.app import prefect_internals
from paramaudit.app.cli_args import EXIT_INPUT
from paramaudit.app.cli_args import overrides as _overrides
from paramaudit.app.cli_args import parser as _parser
from paramaudit.app.commands import cmd_audit, cmd_history, cmd_predict
from paramaudit.app.prefect_server import EmbeddedPrefectServer, api_url_configured
from paramaudit.environment import quiet_environment
from paramaudit.errors import OverfitGateError, UserInputError
from paramaudit.progress import LAST_FLOW_TIMINGS

EXIT_OK, EXIT_ERROR, EXIT_GATE, EXIT_INTERRUPT = 0, 1, 3, 130
__all__ = ["EXIT_INPUT", "cmd_run", "main", "preflight"]


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write via a temporary file and rename, so a reader never sees half a result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def preflight(args: argparse.Namespace) -> Any:
    """Everything a user can get wrong, checked before any server or search starts."""
    from paramaudit.config import load_config
    from paramaudit.data import check_inputs
    from paramaudit.tracking import check_artifact_location, check_reachable, resolve_tracking_uri

    if args.target and not args.data and not args.config:
        raise UserInputError("--target goes with --data PATH")
    if args.resume:
        if _overrides(args) or args.config:
            raise UserInputError("--resume takes the interrupted run's own config; "
                                 "drop the other run options")
        from paramaudit.config import TrackingConfig
        from paramaudit.runs import load_resume_config

        uri = resolve_tracking_uri(TrackingConfig())
        check_reachable(uri)
        cfg, _ = load_resume_config(uri, args.resume)
        return cfg
    cfg = load_config(args.config, _overrides(args))
    for flag, path in (("--output-json", args.output_json), ("--timings", args.timings)):
        parent = path.resolve().parent if path is not None else None
        if parent is not None and parent.exists() and not os.access(parent, os.W_OK):
            raise UserInputError(f"{flag}: folder {str(parent)!r} is not writable")
    check_inputs(cfg.effective())
    check_reachable(resolve_tracking_uri(cfg.tracking))
    check_artifact_location(cfg.tracking)
    from paramaudit.search.trainable import check_devices

    check_devices(cfg)  # a GPU asked for where none is visible: refused before Ray starts
    return cfg


def _load_pipeline(cfg: Any) -> tuple[Any, float]:
    """Import the flow (Prefect, torch, MLflow) and open the tracking store once; return the flow.

    Runs in a thread while the main thread starts Ray. Opening the store here leaves MLflow's
    imports and its database engine ready for the flow's own tracker.
    """
    started = time.monotonic()
    from paramaudit.flows.pipeline import paramaudit_pipeline
    from paramaudit.prefetch import prefetch_for_later_steps
    from paramaudit.tracking import Tracker

    Tracker(cfg.tracking, cfg.experiment)
    prefetch_for_later_steps()  # the steps' own imports, while the flow run is created
    return paramaudit_pipeline, time.monotonic() - started


@contextlib.contextmanager
def _sigterm_left_to_the_cli() -> Iterator[None]:
    """While the CLI's flow run runs, SIGTERM is paramaudit.stopping's, not Prefect's engine's."""
    if not stopping.installed():
        yield
        return
    with prefect_internals.sigterm_left_to_caller():
        yield


def cmd_run(args: argparse.Namespace) -> int:
    """The pipeline, from the command line.

    Start-up runs side by side: Prefect's server boots in its own process, the flow's imports
    run in a thread, and Ray starts in the main thread (mostly waiting on its processes).
    """
    # Start-up imports torch, Ray, Prefect and MLflow: about a million objects, which Python's
    # cyclic garbage collector would walk again and again while they load (about a tenth of the
    # import time, measured). It is paused until the flow starts; what start-up built (modules,
    # classes: kept for the whole run) is then frozen, so the run's collections skip it.
    gc.disable()
    try:
        return _run(args)
    finally:
        gc.enable()


def _prefect_settings(server: EmbeddedPrefectServer | None,
                      timings: dict[str, float]) -> tuple[EmbeddedPrefectServer | None, Any]:
    """The server the flow reports to, and the settings that point Prefect's client at it."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        get_current_settings,
        temporary_settings,
    )

    if server is not None and PREFECT_API_URL.value():
        server.stop()  # the active Prefect profile names a server: the flow reports there
        return None, contextlib.nullcontext()
    if server is None:
        return None, contextlib.nullcontext()
    timings["prefect_server_wait"] = server.wait_ready(
        get_current_settings().server.ephemeral.startup_timeout_seconds)
    # no heartbeats: they let a lasting server mark a crashed run, but this server ends with
    # this process; and a flow run's end waits for the heartbeat thread's current one-second
    # sleep (half a second on average)
    return server, temporary_settings(updates={PREFECT_API_URL: server.api_url,
                                               PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


def _print_summary(summary: dict[str, Any], wall: float) -> None:
    """The closing lines at the terminal: where the run is and what it found."""
    tm = summary["test_metrics"]
    print("")
    print("== paramaudit summary ==")
    print(f"  MLflow run     {summary['mlflow_run_id']}  (experiment {summary['experiment']!r})")
    base = summary.get("baseline") or {}
    if "r2" in tm:  # a regression
        print(f"  test R²        {tm['r2']:.4f}   RMSE {tm['rmse']:.4g}   test loss {tm['loss']:.4f}")
        if "rmse" in base:
            print(f"  baseline       always the mean {base['predicts']:.4g}: R² {base['r2']:.4f}, "
                  f"RMSE {base['rmse']:.4g}")
    else:
        print(f"  test accuracy  {tm['accuracy']:.4f}   balanced {tm['balanced_accuracy']:.4f}   "
              f"test loss {tm['loss']:.4f}")
        if "balanced_accuracy" in base:
            print(f"  baseline       always {base['predicts']!r}: accuracy {base['accuracy']:.4f}, "
                  f"balanced {base['balanced_accuracy']:.4f}")
    print(f"  parameters     {summary['params_total']:,} learned "
          f"({summary['params_trainable']:,} trainable)")
    print(f"  overfitting    {summary['overfit']['verdict']}")
    print(f"  trials         {summary['trials']}")
    print("  hyperparameters " + ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in summary["best_hyperparameters"].items()))
    print(f"  wall time      {wall:.1f} s")
    print(f"  open the MLflow UI: {summary['mlflow_ui']['command']}")
    print(f"  then: {summary['mlflow_ui']['url']}")


def _checked(args: argparse.Namespace) -> tuple[Any, EmbeddedPrefectServer | None]:
    """The run's config, checked, and the Prefect server starting beside the checks.

    Prefect's server (when the environment names none; a profile's URL is checked later, once
    Prefect's settings are loaded) starts first, gated: its imports, most of its start-up, run
    while the input is checked; it goes on once the input is good, and bad input kills it
    before it has touched anything (EmbeddedPrefectServer.release).
    """
    server = None if api_url_configured() else EmbeddedPrefectServer(gated=True)
    try:
        cfg = preflight(args)
    except BaseException:
        if server is not None:
            server.stop()
        raise
    if server is not None:
        server.release()
    return cfg, server


def _finish(args: argparse.Namespace, summary: dict[str, Any], timings: dict[str, float],
            t0: float, called_at: float) -> None:
    """The summary and the phases' timings written where asked, and the summary printed."""
    timings = LAST_FLOW_TIMINGS | {k: round(v, 3) for k, v in timings.items()}
    if "flow_entered_at" in timings:
        timings["prefect_start"] = round(timings.pop("flow_entered_at") - called_at, 3)
    timings["total"] = round(time.monotonic() - t0, 3)
    if args.output_json:
        _write_json_atomic(args.output_json, summary)
    if args.timings:
        _write_json_atomic(args.timings, timings)
    _print_summary(summary, timings["total"])


def _run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    stopping.at_once(True)  # until the flow runs there is nothing to end but processes
    cfg, server = _checked(args)
    checked = time.monotonic()
    from paramaudit.search import ray_cpus, ray_session

    print(f"paramaudit: {cfg.experiment}: "
          f"{cfg.data.dataset or cfg.data.path} / {cfg.search.algorithm} search"
          f"{' (smoke)' if cfg.smoke else ''}", flush=True)
    timings: dict[str, float] = {}
    pool = ThreadPoolExecutor(1, thread_name_prefix="paramaudit-load")
    try:
        loading = pool.submit(_load_pipeline, cfg)
        ray_started = time.monotonic()
        # the flow's search uses the Ray started here; this context stops it after the flow
        with ray_session(cfg.ray, ray_cpus(cfg)):
            timings["ray_start"] = time.monotonic() - ray_started
            paramaudit_pipeline, timings["imports"] = loading.result()
            server, settings = _prefect_settings(server, timings)
            timings["startup"] = time.monotonic() - checked
            gc.freeze()
            gc.enable()
            called_at = time.time()
            stopping.at_once(False)  # from here on a stop ends the MLflow runs first
            try:
                with settings, _sigterm_left_to_the_cli():
                    summary = paramaudit_pipeline(config=cfg, resume_run_id=args.resume)
            except OverfitGateError as err:
                summary = err.summary
                if summary and args.output_json:
                    _write_json_atomic(args.output_json, summary)
                raise
            ray_stopping = time.monotonic()
        timings["ray_stop"] = time.monotonic() - ray_stopping
    finally:
        # interrupted, the flow's imports may still be running: not waited for (the exit is
        # os._exit, see stopping.exit_interrupted)
        pool.shutdown(wait=not stopping.requested(), cancel_futures=True)
    timings["checks"] = checked - t0
    _finish(args, summary, timings, t0, called_at)
    return EXIT_OK


def _one_line(err: BaseException) -> str:
    from paramaudit.tracking import redact_text

    # redacted before it is cut: a URI cut inside its password would no longer match
    text = redact_text(" ".join(str(err).split())) or type(err).__name__
    return text[:1000]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``paramaudit`` console script.

    An interrupted ``run`` (SIGTERM or SIGINT) does not return: it ends the process with exit
    code 130 within paramaudit.stopping's deadline, its MLflow runs KILLED and its processes
    stopped.
    """
    quiet_environment()
    os.environ.setdefault("PREFECT_LOGGING_LOG_PRINTS", "true")
    args = _parser().parse_args(argv)
    if args.command == "run":
        # SIGTERM and SIGINT end a run the way Ctrl-C does: the parent run and the trials still
        # running are marked KILLED, Ray is stopped; bounded in time whatever the run is doing
        stopping.install(debug=args.debug)
    else:
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    handler = {"run": cmd_run, "audit": cmd_audit, "predict": cmd_predict,
               "history": cmd_history}[args.command]
    try:
        code = handler(args)
    except UserInputError as err:
        if args.debug:
            traceback.print_exc()
        print(f"paramaudit: error: {_one_line(err)}", file=sys.stderr)
        code = EXIT_INPUT
    except OverfitGateError as err:
        if args.debug:
            traceback.print_exc()
        print(f"paramaudit: {_one_line(err)}", file=sys.stderr)
        code = EXIT_GATE
    except KeyboardInterrupt:
        if not stopping.requested():  # else exit_interrupted below says it
            print("paramaudit: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPT
    except OSError as err:
        if args.debug:
            traceback.print_exc()
        if err.errno == errno.ENOSPC:
            where = f" writing {err.filename}" if err.filename else ""
            print(f"paramaudit: failed: no space left on the device{where}", file=sys.stderr)
        else:
            print(f"paramaudit: failed: {type(err).__name__}: {_one_line(err)}", file=sys.stderr)
        code = EXIT_ERROR
    except Exception as err:  # the contract: one line, exit 1; --debug shows the traceback
        if args.debug:
            traceback.print_exc()
        print(f"paramaudit: failed: {type(err).__name__}: {_one_line(err)}", file=sys.stderr)
        code = EXIT_ERROR
    except BaseException:
        if not stopping.requested():
            raise
    if stopping.requested():
        # a stop wins over whatever the run did meanwhile (its error went to the muted stderr)
        stopping.exit_interrupted()
    sys.stdout.flush()
    # Python's last garbage collection at exit walks every object torch, Ray, Prefect and MLflow
    # created (about 3 s here) only to free memory the OS reclaims anyway: skip it. Files and
    # runs are closed by now; atexit handlers (Prefect's, Ray's, the server's stop) still run.
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(main())
