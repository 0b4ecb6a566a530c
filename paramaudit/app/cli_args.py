"""The ``paramaudit`` command line's arguments: the parser and the config overrides they make.

Building the parser imports nothing heavy (no torch, Prefect or MLflow): ``--help`` and a usage
error answer at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NoReturn

EXIT_INPUT = 2  # a usage error, as every bad input (paramaudit.app.cli's exit codes)
DESCRIPTION = ("paramaudit: run the pipeline (search, train, audit, register), audit a model, predict "
               "with a logged one, list past runs")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage problem in one line and exits 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INPUT, f"paramaudit: error: {message} (see --help)\n")


def _optimizer(name: str) -> str:
    """``--optimizer``: a name training builds (read on use, so building the parser loads no torch)."""
    from paramaudit.train_hyperparameters import OPTIMIZERS

    if name not in OPTIMIZERS:
        raise argparse.ArgumentTypeError(f"invalid choice: {name!r} (choose from {', '.join(OPTIMIZERS)})")
    return name


def parser() -> argparse.ArgumentParser:
    """The command line: run, audit, predict and history, each with its options."""
    p = _Parser(prog="paramaudit", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run(sub)
    _add_others(sub)
    return p


def _add_run(sub: Any) -> None:
    run = sub.add_parser("run", help="run the pipeline: preprocess, search, train, audit, publish, gate")
    run.add_argument("--config", type=Path, help="YAML config (default: embedded defaults)")
    src = run.add_mutually_exclusive_group()
    src.add_argument("--dataset", help="built-in data set: digits, iris, wine, breast_cancer, "
                                       "diabetes (regression)")
    src.add_argument("--data", type=Path, help="CSV or Parquet file")
    run.add_argument("--target", help="target column of --data")
    run.add_argument("--drop", action="append", metavar="COL",
                     help="leave this column of --data out (repeatable)")
    run.add_argument("--categorical", choices=["auto", "onehot", "frequency", "error"],
                     help="how text and boolean columns are encoded (default: auto)")
    run.add_argument("--task", choices=["auto", "classification", "regression"],
                     help="what the target is (default: auto, from its values)")
    run.add_argument("--model", metavar="NAME|REF",
                     help="mlp, cnn, or your own builder: package.module:build or file.py:build")
    run.add_argument("--trials", type=int, help="number of search trials")
    run.add_argument("--max-epochs", type=int, help="epoch budget per trial and final model")
    run.add_argument("--search", choices=["random", "grid", "bayes"], help="search algorithm")
    run.add_argument("--experiment", help="MLflow experiment name")
    run.add_argument("--seed", type=int, help="random seed")
    run.add_argument("--smoke", action="store_true", default=None,
                     help="tiny run: 2 trials, 2 epochs")
    run.add_argument("--output-json", type=Path, help="write the run's summary here")
    run.add_argument("--timings", type=Path, metavar="PATH",
                     help="write the wall seconds of each phase here (what bench/ reads)")
    run.add_argument("--resume", metavar="MLFLOW_RUN_ID",
                     help="continue an interrupted run's search (same config, same parent run)")
    run.add_argument("--debug", action="store_true", help="show tracebacks")


def _add_others(sub: Any) -> None:
    aud = sub.add_parser("audit", help="count a model's parameters layer by layer")
    aud.add_argument("spec", help="module.path:callable, or models:NAME")
    aud.add_argument("--meta", action="store_true", help="build on the meta device (no memory)")
    aud.add_argument("--depth", type=int, help="sum rows at this module-path depth")
    aud.add_argument("--format", default="table", choices=["table", "json", "csv", "markdown"])
    aud.add_argument("--optimizer", default="adam", type=_optimizer, metavar="NAME",
                     help="optimizer for the training-memory estimate: any one training builds "
                          "(default: %(default)s)")
    aud.add_argument("--debug", action="store_true", help="show tracebacks")

    pred = sub.add_parser("predict", help="a registered or logged model's answers for a file's rows")
    pred.add_argument("--model", required=True, metavar="URI",
                      help="models:/NAME@champion, models:/NAME/VERSION, runs:/RUN/model or a run id")
    pred.add_argument("--data", required=True, type=Path, help="CSV or Parquet file of raw rows")
    pred.add_argument("--output", required=True, type=Path,
                      help="where the rows go with prediction and proba_<label> columns (.csv, .parquet)")
    pred.add_argument("--debug", action="store_true", help="show tracebacks")

    hist = sub.add_parser("history", help="one row per pipeline run: data, search, score, verdict")
    hist.add_argument("--experiment", default="paramaudit", help="MLflow experiment (default: %(default)s)")
    hist.add_argument("--registered-name", metavar="NAME",
                      help="the registered model whose champion to mark (default: the experiment)")
    hist.add_argument("--csv", type=Path, metavar="PATH", help="also write the table as CSV")
    hist.add_argument("--plot", type=Path, metavar="PATH",
                      help="also write a PNG of the test score and parameter count over time")
    hist.add_argument("--debug", action="store_true", help="show tracebacks")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config keys ``run``'s options set (dotted paths), where an option was given."""
    out = {
        "data.dataset": args.dataset,
        "data.path": str(args.data) if args.data else None,
        "data.target": args.target,
        "data.drop": args.drop,
        "data.categorical": args.categorical,
        "task": args.task,
        "model": args.model,
        "search.trials": args.trials,
        "train.max_epochs": args.max_epochs,
        "search.algorithm": args.search,
        "experiment": args.experiment,
        "seed": args.seed,
        "smoke": args.smoke,
    }
    return {k: v for k, v in out.items() if v is not None}
