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

    .venv/bin/python bench/search.py [--rows 50000] [--trials 32] [--epochs 8] [--quick]
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
    from paramaudit.tracking import Tracker
    from paramaudit.tuning import ray_session, run_search, trial_slots

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
            outcome = run_search(splits, cfg, tracker, parent, store / "tune", say=lambda _m: None)
        wall = time.monotonic() - t0
    done = [t for t in outcome.trials if t.history["val_loss"]]
    return {
        "splits": splits, "outcome": outcome, "wall": wall, "ray_start": ray_start,
        "search_wall": outcome.seconds, "warmup": outcome.worker_warmup_seconds,
        "best_val_accuracy": max(t.best("val_accuracy", "max") for t in done),
        "train_seconds": sum(t.train_seconds for t in done),
        "epochs_run": sum(len(t.history["val_loss"]) for t in done),
        "configs": [t.hyperparameters for t in outcome.trials],
    }


def baseline(splits: object, configs: list[dict], epochs: int) -> dict:
    """A plain script: each configuration trained in turn for the full epoch budget."""
    import torch
    from torch import nn

    from models import build_model
    from paramaudit.config import resolve_hyperparameters
    from paramaudit.training import make_optimizer

    x_tr, y_tr = torch.from_numpy(splits.x_train), torch.from_numpy(splits.y_train)
    x_va, y_va = torch.from_numpy(splits.x_val), torch.from_numpy(splits.y_val)
    best, start = 0.0, time.monotonic()
    for config in configs:
        hp = resolve_hyperparameters(config, "mlp")
        torch.manual_seed(0)
        model = build_model("mlp", tuple(splits.input_shape), splits.n_classes, **hp)
        opt = make_optimizer(model.parameters(), hp)
        bs = int(hp["batch_size"])
        for _ in range(epochs):
            model.train()
            order = torch.randperm(len(y_tr))
            for i in range(0, len(order), bs):
                idx = order[i:i + bs]
                opt.zero_grad()
                nn.functional.cross_entropy(model(x_tr[idx]), y_tr[idx]).backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                acc = float((model(x_va).argmax(1) == y_va).float().mean())
            if math.isfinite(acc):
                best = max(best, acc)
    return {"wall": time.monotonic() - start, "best_val_accuracy": best}


def overhead_per_trial(run: dict, slots: int = 2, warm: bool = False) -> float:
    """Slot-seconds of the search not spent training or evaluating, per trial.

    With ``warm``, the search's one-time wait for Ray's workers to import torch (a cost per
    worker, paid once whatever the number of trials) is left out.
    """
    trials = len(run["outcome"].trials)
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
    ("tune", "tune (1 trial through Ray Tune)"),
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
        cmd = [sys.executable, "-m", "paramaudit.cli", "run", "--config", str(cfg),
               "--output-json", f"{tmp}/out.json"]
        runs = []
        for _ in range(1 + repeats):
            t0 = time.monotonic()
            proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
            wall = time.monotonic() - t0
            if proc.returncode != 0:
                sys.exit(f"bench: smoke run failed: {proc.stderr[-2000:]}")
            runs.append((wall, json.loads(Path(tmp, "out.json").read_text())["timings"]))
    first, measured = runs[0], sorted(runs[1:], key=lambda r: r[0])
    median = measured[len(measured) // 2]
    return {"first_wall": first[0], "walls": [w for w, _ in runs[1:]], "wall": median[0],
            "timings": median[1]}


def main() -> None:
    """Run all three and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--trials", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.trials, args.epochs = 4000, 6, 3
    space = {"learning_rate": {"loguniform": [1e-4, 3e-2]}, "batch_size": {"choice": [64, 128]},
             "num_layers": {"choice": [1, 2, 3]}, "hidden_size": {"choice": [64, 128, 256]},
             "optimizer": {"choice": ["adam", "sgd", "rmsprop"]}}
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="paramaudit-bench-") as tmp:
        store = Path(tmp)
        x, y = synthetic(args.rows, args.features)
        csv = store / "synthetic.csv"
        header = ",".join([f"f{i}" for i in range(x.shape[1])] + ["label"])
        np.savetxt(csv, np.column_stack([x, y]), delimiter=",", header=header, comments="",
                   fmt=["%.5f"] * x.shape[1] + ["%d"])
        run = pipeline_search(csv, args.trials, args.epochs, store, space)
        base = baseline(run["splits"], run["configs"], args.epochs)
        tiny_csv = store / "tiny.csv"
        np.savetxt(tiny_csv, np.column_stack([x[:600, :8], y[:600]]), delimiter=",",
                   header=",".join([f"f{i}" for i in range(8)] + ["label"]), comments="",
                   fmt=["%.5f"] * 8 + ["%d"])
        tiny = pipeline_search(tiny_csv, args.trials, 1, store / "tiny", {
            "learning_rate": {"loguniform": [1e-3, 1e-2]}, "hidden_size": 16})
    smoke = smoke_process()

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
    results.update(ratio=ratio, gap_pts=gap_pts, overhead_s=oh_big, overhead_tiny_s=oh_tiny,
                   overhead_tiny_warm_s=oh_tiny_warm,
                   baseline=base, pipeline={k: run[k] for k in ("search_wall", "best_val_accuracy",
                                                                "train_seconds", "epochs_run")},
                   smoke=smoke)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "search.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
