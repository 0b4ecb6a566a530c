"""The ``paramaudit`` verbs besides ``run``: ``predict``, ``history`` and ``audit``."""

from __future__ import annotations

import argparse
import sys

from paramaudit.environment import quiet_environment
from paramaudit.errors import UserInputError

EXIT_OK = 0


def cmd_predict(args: argparse.Namespace) -> int:
    """A model's answers for the rows of a file, written with them."""
    from paramaudit.app.predict import predict_file

    quiet_environment()
    n = predict_file(args.model, args.data, args.output)
    print(f"paramaudit: predict: {n:,} rows answered, written to {args.output}")
    return EXIT_OK


def _clip(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def cmd_history(args: argparse.Namespace) -> int:
    """The experiment's pipeline runs, one row each."""
    import pandas as pd

    from paramaudit.config import TrackingConfig
    from paramaudit.history import history, trend_plot
    from paramaudit.tracking import resolve_tracking_uri

    table = history(resolve_tracking_uri(TrackingConfig()), args.experiment,
                    args.registered_name)
    if table.empty:
        print(f"paramaudit: history: no finished pipeline run in {args.experiment!r}")
        return EXIT_OK
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.csv, index=False)
    if args.plot:
        trend_plot(table, args.plot)
    # the hyperparameters in full are in the CSV; a long line of them would hide the rest
    shown = table.assign(run=table["run"].str[:8],
                         best_hyperparameters=table["best_hyperparameters"].map(_clip))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(shown.to_string(index=False))
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    """The parameter audit of one model, printed."""
    from paramaudit.audit import audit_model
    from paramaudit.report import render
    from paramaudit.spec import load_spec

    if args.depth is not None and args.depth < 1:
        raise UserInputError(f"--depth must be >= 1, got {args.depth}")
    model = load_spec(args.spec, meta=args.meta)
    report = audit_model(model, optimizer=args.optimizer)
    sys.stdout.write(render(report, args.format, depth=args.depth).rstrip("\n") + "\n")
    return EXIT_OK
