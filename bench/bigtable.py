"""Benchmark a big table end to end: wall time and peak memory against the float32 matrix.

Generates a CSV of --rows x --features numbers plus a 3-class ``label`` (written in chunks,
cached under bench/results/; deleted afterwards unless --keep), then runs the whole pipeline as
a user would (``paramaudit run --data FILE --target label --trials 2 --max-epochs 1``) in a
scratch folder, polling memory while it runs:

- the main process's peak RSS (``VmHWM`` of /proc/PID/status, the kernel's own high-water mark);
- the whole process tree's peak (the sum of every process's PSS, sampled; PSS shares a page
  mapped by several processes, such as Ray's object store, among them instead of counting it
  in each).

Then the same for a baseline a user would write (``pandas.read_csv`` then
``to_numpy(float32)``). Target: the main process's peak <= 4x the float32 feature matrix.

    .venv/bin/python bench/bigtable.py [--rows 1000000] [--features 40] [--keep] [--skip-baseline]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TARGET_RATIO = 4.0
CHUNK_ROWS = 100_000
BASELINE = """
import sys
import numpy as np
import pandas as pd
frame = pd.read_csv(sys.argv[1])
x = frame.drop(columns=["label"]).to_numpy(np.float32)
y = frame["label"].to_numpy()
del frame
print(x.shape, x.dtype)
"""


def make_csv(path: Path, rows: int, features: int, seed: int = 0) -> None:
    """N rows of ``features`` Gaussian numbers and a label that depends on a few of them."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(features, 3)).astype(np.float32)
    tmp = path.with_suffix(".part")
    with tmp.open("w") as fh:
        fh.write(",".join([f"f{j}" for j in range(features)] + ["label"]) + "\n")
        for start in range(0, rows, CHUNK_ROWS):
            n = min(CHUNK_ROWS, rows - start)
            x = rng.normal(size=(n, features)).astype(np.float32)
            y = np.argmax(x @ w + rng.normal(scale=0.5, size=(n, 3)), axis=1)
            block = np.column_stack([x, y]).astype(np.float64)
            fmt = ["%.6g"] * features + ["%d"]
            np.savetxt(fh, block, fmt=fmt, delimiter=",")
    tmp.rename(path)


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = Path(d, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(d.name))
    return tree


def _tree(pid: int) -> list[int]:
    kids, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


class Watch:
    """Polls the main process's high-water mark and the process tree's PSS while it runs."""

    def __init__(self, pid: int, period: float = 0.25) -> None:
        self.pid, self.period = pid, period
        self.main_peak_kib = 0
        self.tree_peak_kib = 0
        self.samples: list[tuple[float, int]] = []  # (seconds, main RSS KiB): where the peak is
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.main_peak_kib = max(self.main_peak_kib, _status_kib(self.pid, "VmHWM"))
            self.samples.append((time.monotonic() - self.started, _status_kib(self.pid, "VmRSS")))
            self.tree_peak_kib = max(self.tree_peak_kib, sum(_pss_kib(p) for p in _tree(self.pid)))
            self._stop.wait(self.period)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def measured(cmd: list[str], cwd: str, env: dict[str, str]) -> dict:
    """Run a command, its wall time and peaks (MiB); exits on failure."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    watch = Watch(proc.pid)
    assert proc.stdout is not None
    lines = [(time.monotonic() - start, line.rstrip()) for line in proc.stdout]
    proc.wait()
    wall = time.monotonic() - start
    watch.stop()
    out = "\n".join(line for _, line in lines)
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd[:4])} failed ({proc.returncode}):\n{out[-3000:]}")
    return {"wall_s": round(wall, 1), "main_peak_mib": round(watch.main_peak_kib / 1024, 1),
            "tree_peak_mib": round(watch.tree_peak_kib / 1024, 1), "output": out,
            "phases_mib": phase_peaks(lines, watch.samples)}


def phase_peaks(lines: list[tuple[float, str]], samples: list[tuple[float, int]]) -> dict:
    """The main process's highest sampled RSS (MiB) between the pipeline's progress lines."""
    steps = [(t, re.search(r"\[\d+/\d+\] [a-z]+", line)) for t, line in lines]
    marks = [(0.0, "start-up and input checks")] + [(t, m.group(0)) for t, m in steps if m]
    out = {}
    for i, (t, name) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else float("inf")
        rss = [kib for s, kib in samples if t <= s < end]
        out[name] = round(max(rss, default=0) / 1024)
    return out


def run_pipeline(csv: Path, tmp: str) -> dict:
    """``paramaudit run`` on the CSV in a scratch folder, as a user would."""
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/mlflow.db",
               PREFECT_HOME=f"{tmp}/prefect")
    cmd = [sys.executable, "-m", "paramaudit.app.cli", "run", "--data", str(csv),
           "--target", "label", "--trials", "2", "--max-epochs", "1",
           "--timings", f"{tmp}/timings.json", "--output-json", f"{tmp}/out.json"]
    res = measured(cmd, tmp, env)
    res["timings"] = json.loads(Path(tmp, "timings.json").read_text())
    res["accuracy"] = json.loads(Path(tmp, "out.json").read_text())["test_metrics"]["accuracy"]
    return res


def main() -> None:
    """Generate, run, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=40)
    ap.add_argument("--keep", action="store_true", help="keep the generated CSV for another run")
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    csv = RESULTS / f"bigtable-{args.rows}x{args.features}.csv"
    if not csv.exists():
        started = time.monotonic()
        make_csv(csv, args.rows, args.features)
        print(f"generated {csv} ({csv.stat().st_size / 2**20:,.0f} MiB) in "
              f"{time.monotonic() - started:.0f} s", flush=True)
    matrix_mib = args.rows * args.features * 4 / 2**20
    try:
        with tempfile.TemporaryDirectory(prefix="paramaudit-bigtable-") as tmp:
            pipe = run_pipeline(csv, tmp)
            base = None if args.skip_baseline else measured(
                [sys.executable, "-c", BASELINE, str(csv)], tmp, dict(os.environ))
    finally:
        if not args.keep:
            csv.unlink(missing_ok=True)
    print(f"\nbig table: {args.rows:,} x {args.features} float32 matrix {matrix_mib:,.0f} MiB, "
          f"{os.cpu_count()} CPUs\n")
    print(f"{'':<34}{'wall s':>8}{'main peak MiB':>15}{'x matrix':>10}{'tree peak MiB':>15}")
    rows = [("paramaudit run (2 trials, 1 epoch)", pipe)] + (
        [("baseline: read_csv + to_numpy", base)] if base else [])
    for name, r in rows:
        print(f"{name:<34}{r['wall_s']:>8.1f}{r['main_peak_mib']:>15,.0f}"
              f"{r['main_peak_mib'] / matrix_mib:>10.2f}{r['tree_peak_mib']:>15,.0f}")
    ratio = pipe["main_peak_mib"] / matrix_mib
    print(f"\ntarget: main peak <= {TARGET_RATIO:g}x the matrix: {ratio:.2f}x "
          f"{'PASS' if ratio <= TARGET_RATIO else 'FAIL'}")
    if base:
        print(f"pipeline main peak / baseline peak: {pipe['main_peak_mib'] / base['main_peak_mib']:.2f}")
    t = pipe["timings"]
    print("phases (s): " + ", ".join(f"{k} {t[k]:.1f}" for k in
                                      ("checks", "startup", "preprocess", "search", "train",
                                       "audit", "publish") if k in t)
          + f"; test accuracy {pipe['accuracy']:.4f}")
    print("main RSS peak by phase (MiB; a phase runs until the next one's line): "
          + ", ".join(f"{k} {v:,}" for k, v in pipe["phases_mib"].items()))
    summary = {"rows": args.rows, "features": args.features, "matrix_mib": round(matrix_mib, 1),
               "pipeline": {k: v for k, v in pipe.items() if k != "output"},
               "baseline": {k: v for k, v in base.items() if k != "output"} if base else None,
               "ratio": round(ratio, 2)}
    (RESULTS / f"bigtable-{args.rows}.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
