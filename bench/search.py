"""Benchmark the search against what a user writes without this tool, in one script.

Three measurements, each a ratio or a split measured in this one process:

1. Search speed: on synthetic data where training dominates (50,000 x 64, 4 classes), the
   pipeline's search (Ray Tune, ASHA, 2 trials in parallel, one torch thread each) against a
   plain PyTorch loop that trains the SAME configurations one after another for the full epoch
   budget. Targets: best val accuracy within 0.5 points of the baseline's, in <= 0.5x its wall.
2. Per-trial overhead: CPU-slot seconds of the search not spent in training or evaluation,
   per trial (target <= 0.5 s), from the search above and from a search of as many tiny 1-epoch
   trials (where nothing but overhead is left), with and without the one-time wait for Ray's
   workers to import torch and Ray Tune (a cost per worker, not per trial).
3. Fixed cost of a smoke run (1 trial, 1 epoch, tiny data) as a whole `paramaudit run` process,
   with where it goes (target <= 20 s).
4. What a user sees: whole processes, one after the other. `paramaudit run` on a CSV of the same
   synthetic data (a 32-configuration grid, ASHA, 20 epochs, the default patience: start-up, search,
   final model, audit and publishing included) against a plain PyTorch script that reads the same
   CSV, splits and scales it and trains the same 32 configurations one after another for 20 epochs
   (target <= 0.5x its wall).

    .venv/bin/python bench/search.py [--rows 50000] [--trials 32] [--epochs 8] [--quick]
                                     [--only search|process]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synthetic(rows: int, features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A classification problem big enough that training, not overhead, dominates."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=rows, n_features=features, n_informative=features // 2,
                               n_redundant=features // 8, n_classes=4, n_clusters_per_class=2,
                               class_sep=1.0, random_state=seed)
    return x.astype(np.float32), y.astype(np.int64)


def pipeline_search(csv: Path, trials: int, epochs: int, store: Path, space: dict) -> dict:
    """The pipeline's own search step (Ray Tune + ASHA + MLflow child runs), timed."""
    from paramaudit.config import build_config
    from paramaudit.pipeline import preprocess
    from paramaudit.runs import search_dir
    from paramaudit.search import ray_session, run_search, trial_slots
    from paramaudit.tracking import Tracker

    cfg = build_config({
        "experiment": "bench", "data": {"path": str(csv), "target": "label"},
        "search": {"trials": trials, "scheduler": "asha", "grace_period": 1,
                   "reduction_factor": 3, "max_concurrent": 2, "space": space},
        "train": {"max_epochs": epochs, "patience": epochs},
        "tracking": {"tracking_uri": f"sqlite:///{store / 'mlflow.db'}",
                     "artifact_location": str(store / "art")},
    })
    store.mkdir(parents=True, exist_ok=True)
    splits = preprocess(cfg)
    tracker = Tracker(cfg.tracking, cfg.experiment)
    with tracker.parent_run("bench", {}) as parent:
        t0 = time.monotonic()
        with ray_session(cfg.ray, trial_slots(cfg)):
            ray_start = time.monotonic() - t0
            outcome = run_search(splits, cfg, tracker, parent, search_dir(store), say=lambda _m: None)
        wall = time.monotonic() - t0
    done = [t for t in outcome.records if t.history["val_loss"]]
    return {
        "splits": splits, "outcome": outcome, "wall": wall, "ray_start": ray_start,
        "search_wall": outcome.seconds, "warmup": outcome.worker_warmup_seconds,
        "best_val_accuracy": max(t.best("val_accuracy", "max") for t in done),
        "train_seconds": sum(t.train_seconds for t in done),
        "epochs_run": sum(len(t.history["val_loss"]) for t in done),
        "configs": [t.hyperparameters for t in outcome.records],
    }


def baseline(splits: object, configs: list[dict], epochs: int) -> dict:
    """A plain script: each configuration trained in turn for the full epoch budget."""
    import torch

    from paramaudit.config import resolve_hyperparameters
    from paramaudit.models import build_model
    from paramaudit.training import make_optimizer

    x_tr, y_tr = torch.from_numpy(splits.x_train), torch.from_numpy(splits.y_train)
    x_va, y_va = torch.from_numpy(splits.x_val), torch.from_numpy(splits.y_val)
    best, start = 0.0, time.monotonic()
    for config in configs:
        hp = resolve_hyperparameters(config, "mlp")
        torch.manual_seed(0)
        model = build_model("mlp", tuple(splits.input_shape), splits.n_classes, **hp)
        opt = make_optimizer(model.parameters(), hp)
        best = max(best, plain_epochs(model, opt, (x_tr, y_tr, x_va, y_va), int(hp["batch_size"]),
                                      epochs))
    return {"wall": time.monotonic() - start, "best_val_accuracy": best}


def plain_epochs(model: Any, opt: Any, data: tuple[Any, Any, Any, Any], batch_size: int,
                 epochs: int) -> float:
    """The textbook loop: shuffled mini-batches, then val accuracy; returns the best of it."""
    import torch
    from torch import nn

    x_tr, y_tr, x_va, y_va = data
    best = 0.0
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y_tr))
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x_tr[idx]), y_tr[idx]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = float((model(x_va).argmax(1) == y_va).float().mean())
        if math.isfinite(acc):
            best = max(best, acc)
    return best


GRID_SPACE = {  # 2 x 2 x 2 x 4 = 32 configurations, from the default space's values
    "learning_rate": {"choice": [1e-3, 1e-2]}, "batch_size": {"choice": [64, 128]},
    "num_layers": {"choice": [1, 2]}, "hidden_size": {"choice": [32, 64, 128, 256]},
    "optimizer": "adam",
}
GRID_EPOCHS = 20


def grid_configs() -> list[dict]:
    """The grid's 32 configurations, in a fixed order."""
    import itertools

    names = [k for k, v in GRID_SPACE.items() if isinstance(v, dict)]
    fixed = {k: v for k, v in GRID_SPACE.items() if not isinstance(v, dict)}
    return [{**fixed, **dict(zip(names, values, strict=True))}
            for values in itertools.product(*(GRID_SPACE[k]["choice"] for k in names))]


def plain_loop(csv: Path, epochs: int) -> None:
    """The plain script a user would write: read, split, scale, train each configuration in turn.

    Run as its own process (``bench/search.py --plain-loop CSV``); prints its best val accuracy.
    """
    import pandas as pd
    import torch
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    from torch import nn

    frame = pd.read_csv(csv)
    x = frame.drop(columns=["label"]).to_numpy(np.float32)
    y = frame["label"].to_numpy(np.int64)
    x_rest, _, y_rest, _ = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    x_tr, x_va, y_tr, y_va = train_test_split(x_rest, y_rest, test_size=0.25, stratify=y_rest,
                                              random_state=0)
    scaler = StandardScaler().fit(x_tr)
    x_tr = torch.from_numpy(scaler.transform(x_tr).astype(np.float32))
    x_va = torch.from_numpy(scaler.transform(x_va).astype(np.float32))
    y_tr, y_va = torch.from_numpy(y_tr), torch.from_numpy(y_va)
    n_classes = int(y.max()) + 1
    best = 0.0
    for config in grid_configs():
        torch.manual_seed(0)
        layers: list[nn.Module] = []
        width = x_tr.shape[1]
        for _ in range(config["num_layers"]):
            layers += [nn.Linear(width, config["hidden_size"]), nn.ReLU()]
            width = config["hidden_size"]
        model = nn.Sequential(*layers, nn.Linear(width, n_classes))
        opt = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
        best = max(best, plain_epochs(model, opt, (x_tr, y_tr, x_va, y_va), config["batch_size"],
                                      epochs))
    print(json.dumps({"best_val_accuracy": best}))


def whole_processes(csv: Path, store: Path) -> dict:
    """`paramaudit run` on the grid against the plain script, each a fresh process, in turn."""
    import yaml

    store.mkdir(parents=True, exist_ok=True)
    cfg = store / "grid.yaml"
    cfg.write_text(yaml.safe_dump({
        "experiment": "bench-grid", "data": {"path": str(csv), "target": "label"},
        "search": {"algorithm": "grid", "trials": 1, "scheduler": "asha", "space": GRID_SPACE},
        "train": {"max_epochs": GRID_EPOCHS},
    }))
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{store}/mlflow.db",
               PREFECT_HOME=str(store / "prefect"))
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "paramaudit.app.cli", "run", "--config", str(cfg),
                           "--output-json", str(store / "out.json"),
                           "--timings", str(store / "timings.json")],
                          cwd=store, env=env, capture_output=True, text=True)
    pipeline_wall = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit(f"bench: the grid run failed: {proc.stderr[-2000:]}")
    summary = json.loads((store / "out.json").read_text())
    t0 = time.monotonic()
    plain = subprocess.run([sys.executable, __file__, "--plain-loop", str(csv)], cwd=store,
                           env=env, capture_output=True, text=True, check=True)
    plain_wall = time.monotonic() - t0
    return {"pipeline_wall": pipeline_wall, "plain_wall": plain_wall,
            "ratio": pipeline_wall / plain_wall,
            "timings": json.loads((store / "timings.json").read_text()),
            "trials": summary["trials"], "test_accuracy": summary["test_metrics"]["accuracy"],
            "plain_best_val_accuracy": json.loads(plain.stdout)["best_val_accuracy"],
            "final_model": summary.get("final_model")}


def overhead_per_trial(run: dict, slots: int = 2, warm: bool = False) -> float:
    """Slot-seconds of the search not spent training or evaluating, per trial.

    With ``warm``, the search's one-time wait for Ray's workers to import torch (a cost per
    worker, paid once whatever the number of trials) is left out.
    """
    trials = len(run["outcome"].records)
    wall = run["search_wall"] - (run["warmup"] if warm else 0.0)
    return (wall * slots - run["train_seconds"]) / trials


SMOKE_SPLIT = (  # the whole process, in order; start-up's three parts run side by side
    ("checks", "input checks (config, data, tracking store)"),
    ("startup", "start-up: the slowest of the three below"),
    ("ray_start", "  Ray start (main thread)"),
    ("imports", "  imports + tracking store (thread)"),
    ("prefect_server_wait", "  Prefect server, wait after Ray"),
    ("prefect_start", "Prefect flow run created"),
    ("preprocess", "preprocess"),
    ("search", "search (1 trial through Ray Tune)"),
    ("train", "final training"),
    ("audit", "audit"),
    ("publish", "publish to MLflow"),
    ("ray_stop", "Ray stop"),
    ("total", "total inside the process"),
)


def smoke_process(repeats: int = 3) -> dict:
    """Whole `paramaudit run` processes (1 trial, 1 epoch, iris): walls and where they go.

    One unmeasured run first creates Prefect's and MLflow's databases (a user's first run);
    the median of the next ``repeats`` is the typical cost.
    """
    with tempfile.TemporaryDirectory(prefix="paramaudit-bench-smoke-") as tmp:
        env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/mlflow.db",
                   PREFECT_HOME=str(Path(tmp) / "prefect"))
        cfg = Path(tmp, "smoke.yaml")
        cfg.write_text("smoke: true\ndata: {dataset: iris}\nsearch: {trials: 1}\n"
                       "train: {max_epochs: 1}\n")
        cmd = [sys.executable, "-m", "paramaudit.app.cli", "run", "--config", str(cfg),
               "--output-json", f"{tmp}/out.json", "--timings", f"{tmp}/timings.json"]
        runs = []
        for _ in range(1 + repeats):
            t0 = time.monotonic()
            proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
            wall = time.monotonic() - t0
            if proc.returncode != 0:
                sys.exit(f"bench: smoke run failed: {proc.stderr[-2000:]}")
            runs.append((wall, json.loads(Path(tmp, "timings.json").read_text())))
    first, measured = runs[0], sorted(runs[1:], key=lambda r: r[0])
    median = measured[len(measured) // 2]
    return {"first_wall": first[0], "walls": [w for w, _ in runs[1:]], "wall": median[0],
            "timings": median[1]}


def write_csv(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """Features and a ``label`` column as CSV."""
    header = ",".join([f"f{i}" for i in range(x.shape[1])] + ["label"])
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", header=header, comments="",
               fmt=["%.5f"] * x.shape[1] + ["%d"])


def print_search(args: argparse.Namespace, run: dict, base: dict, tiny: dict, smoke: dict) -> dict:
    """Measurements 1-3: the tables, and what goes to bench/results."""
    ratio = run["search_wall"] / base["wall"]
    gap_pts = 100 * (base["best_val_accuracy"] - run["best_val_accuracy"])
    print(f"\nsearch benchmark: {args.rows:,} x {args.features} synthetic, {args.trials} trials, "
          f"{args.epochs} epochs budget, {os.cpu_count()} CPUs\n")
    print(f"{'':<44}{'baseline':>12}{'pipeline':>12}")
    print(f"{'wall seconds (search only)':<44}{base['wall']:>12.1f}{run['search_wall']:>12.1f}")
    print(f"{'epochs trained':<44}{args.trials * args.epochs:>12}{run['epochs_run']:>12}")
    print(f"{'best val accuracy':<44}{base['best_val_accuracy']:>12.4f}"
          f"{run['best_val_accuracy']:>12.4f}\n")
    oh_big, oh_tiny = overhead_per_trial(run), overhead_per_trial(tiny)
    oh_tiny_warm = overhead_per_trial(tiny, warm=True)
    t = smoke["timings"]
    rows = [
        ("pipeline wall / baseline wall", f"{ratio:.2f}x", "<= 0.50x", ratio <= 0.5),
        ("best val accuracy behind baseline", f"{gap_pts:.2f} pts", "<= 0.50 pts", gap_pts <= 0.5),
        ("overhead per trial (search above)", f"{oh_big:.2f} s", "<= 0.50 s", oh_big <= 0.5),
        (f"overhead per trial ({args.trials} tiny 1-epoch trials)", f"{oh_tiny:.2f} s",
         "<= 0.50 s", oh_tiny <= 0.5),
        ("  the same, once Ray's workers are warm", f"{oh_tiny_warm:.2f} s", "(no target)",
         None),
        (f"smoke run, whole process (median of {len(smoke['walls'])})", f"{smoke['wall']:.1f} s",
         "<= 20 s", smoke["wall"] <= 20),
    ]
    print(f"{'target':<44}{'measured':>12}{'goal':>14}  verdict")
    for name, got, goal, ok in rows:
        print(f"{name:<44}{got:>12}{goal:>14}  {'' if ok is None else 'PASS' if ok else 'FAIL'}")
    print(f"\nsmoke runs (s): {', '.join(f'{w:.1f}' for w in smoke['walls'])}; the first ever "
          f"run, which creates Prefect's database: {smoke['first_wall']:.1f}. Median run:")
    for key, label in SMOKE_SPLIT:
        if key in t:
            print(f"  {label:<46}{t[key]:>8.2f}")
    print(f"  {'after the process returns (exit, server stop)':<46}"
          f"{smoke['wall'] - t['total']:>8.2f}")
    print(f"\nRay start for the in-process searches: {run['ray_start']:.2f} s and "
          f"{tiny['ray_start']:.2f} s; then waiting for its workers' imports (torch, Ray Tune): "
          f"{run['warmup']:.2f} s and {tiny['warmup']:.2f} s, inside the search walls above")
    return {"ratio": ratio, "gap_pts": gap_pts, "overhead_s": oh_big, "overhead_tiny_s": oh_tiny,
            "overhead_tiny_warm_s": oh_tiny_warm, "baseline": base,
            "pipeline": {k: run[k] for k in ("search_wall", "best_val_accuracy", "train_seconds",
                                              "epochs_run")},
            "smoke": smoke}


def print_processes(rows: int, features: int, proc: dict) -> None:
    """Measurement 4: the whole-process comparison."""
    ok = proc["ratio"] <= 0.5
    print(f"\nwhole processes: {rows:,} x {features} CSV, a 32-configuration grid, ASHA, "
          f"{GRID_EPOCHS} epochs, {os.cpu_count()} CPUs\n")
    print(f"{'plain PyTorch script (32 configs in turn)':<52}{proc['plain_wall']:>10.1f} s")
    print(f"{'paramaudit run (everything)':<52}{proc['pipeline_wall']:>10.1f} s")
    print(f"{'ratio (target <= 0.50x)':<52}{proc['ratio']:>10.2f}x  {'PASS' if ok else 'FAIL'}")
    print(f"{'plain script best val accuracy':<52}{proc['plain_best_val_accuracy']:>10.4f}")
    print(f"{'paramaudit test accuracy of the chosen model':<52}{proc['test_accuracy']:>10.4f}")
    for key in ("checks", "startup", "prefect_start", "preprocess", "search", "train", "audit",
                "publish", "ray_stop", "total"):
        if key in proc["timings"]:
            print(f"  {key:<50}{proc['timings'][key]:>8.2f}")
    if proc.get("final_model"):
        print(f"  final model: {proc['final_model']}")


def main() -> None:
    """Run the measurements and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--trials", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    ap.add_argument("--only", choices=["search", "process"], help="one part of the benchmark")
    ap.add_argument("--plain-loop", type=Path, help=argparse.SUPPRESS)  # measurement 4's baseline
    args = ap.parse_args()
    if args.plain_loop:
        plain_loop(args.plain_loop, GRID_EPOCHS)
        return
    if args.quick:
        args.rows, args.trials, args.epochs = 4000, 6, 3
    space = {"learning_rate": {"loguniform": [1e-4, 3e-2]}, "batch_size": {"choice": [64, 128]},
             "num_layers": {"choice": [1, 2, 3]}, "hidden_size": {"choice": [64, 128, 256]},
             "optimizer": {"choice": ["adam", "sgd", "rmsprop"]}}
    results: dict = {}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="paramaudit-bench-") as tmp:
        store = Path(tmp)
        x, y = synthetic(args.rows, args.features)
        csv = store / "synthetic.csv"
        write_csv(csv, x, y)
        if args.only in (None, "process"):
            results["processes"] = whole_processes(csv, store / "processes")
        if args.only in (None, "search"):
            run = pipeline_search(csv, args.trials, args.epochs, store, space)
            base = baseline(run["splits"], run["configs"], args.epochs)
            tiny_csv = store / "tiny.csv"
            write_csv(tiny_csv, x[:600, :8], y[:600])
            tiny = pipeline_search(tiny_csv, args.trials, 1, store / "tiny", {
                "learning_rate": {"loguniform": [1e-3, 1e-2]}, "hidden_size": 16})
    if args.only in (None, "search"):
        results.update(print_search(args, run, base, tiny, smoke_process()))
    if "processes" in results:
        print_processes(args.rows, args.features, results["processes"])
    (out / f"search{'-' + args.only if args.only else ''}.json").write_text(
        json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
