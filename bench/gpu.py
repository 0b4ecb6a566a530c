"""Benchmark training on a GPU: paramaudit's trainer against a plain PyTorch loop, both on cuda.

For a machine with a CUDA GPU (it says so and exits 1 elsewhere). On synthetic rows (200,000 x 64,
4 classes) one configuration (an MLP of 2 x 1024, Adam, batch 256) is trained for a few epochs by
paramaudit.training.EpochTrainer with device cuda and by the textbook loop on the same device,
data already there; it prints both walls, their ratio (target <= 1.2x: the trainer also measures
train and val every epoch) and the CPU trainer's wall for scale.

    .venv/bin/python bench/gpu.py [--rows 200000] [--epochs 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
HP = {"optimizer": "adam", "learning_rate": 1e-3, "batch_size": 256, "hidden_size": 1024,
      "num_layers": 2, "dropout": 0.1}


def data(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Separable-ish synthetic rows: four classes from a random linear map."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 64)).astype(np.float32)
    y = (x @ rng.normal(size=(64, 4))).argmax(1).astype(np.int64)
    return x, y


def paramaudit_wall(x: np.ndarray, y: np.ndarray, epochs: int, device: str) -> float:
    """EpochTrainer for ``epochs`` epochs on ``device``, synchronised at the end."""
    from paramaudit.models import build_model
    from paramaudit.training import EpochTrainer

    cut = int(len(y) * 0.8)
    torch.manual_seed(0)
    model = build_model("mlp", (64,), 4, **HP)
    start = time.monotonic()
    trainer = EpochTrainer(model, (x[:cut], y[:cut]), (x[cut:], y[cut:]), HP, device=device)
    for _ in range(epochs):
        trainer.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.monotonic() - start


def plain_wall(x: np.ndarray, y: np.ndarray, epochs: int) -> float:
    """The textbook loop on cuda: tensors moved once, shuffled batches, val loss each epoch."""
    cut = int(len(y) * 0.8)
    torch.manual_seed(0)
    start = time.monotonic()
    xt, yt = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()
    model = nn.Sequential(nn.Linear(64, 1024), nn.ReLU(), nn.Dropout(0.1), nn.Linear(1024, 1024),
                          nn.ReLU(), nn.Dropout(0.1), nn.Linear(1024, 4)).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(cut, device="cuda")
        for i in range(0, cut, 256):
            idx = order[i:i + 256]
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            float(nn.functional.cross_entropy(model(xt[cut:]), yt[cut:]))
    torch.cuda.synchronize()
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/gpu.py: no CUDA GPU is visible here; run it on a GPU machine")
    x, y = data(args.rows)
    paramaudit_wall(x[:2048], y[:2048], 1, "cuda")  # CUDA context and kernels, once
    ours = paramaudit_wall(x, y, args.epochs, "cuda")
    plain = plain_wall(x, y, args.epochs)
    cpu = paramaudit_wall(x, y, 1, "cpu") * args.epochs
    print(f"\nGPU training: {args.rows:,} x 64, MLP 2 x 1024, batch 256, {args.epochs} epochs, "
          f"{torch.cuda.get_device_name()}\n")
    print(f"{'paramaudit EpochTrainer, cuda':<40}{ours:>8.1f} s")
    print(f"{'plain PyTorch loop, cuda':<40}{plain:>8.1f} s")
    print(f"{'paramaudit EpochTrainer, cpu (1 epoch x n)':<40}{cpu:>8.1f} s")
    ratio = ours / plain
    print(f"\ntarget: paramaudit / plain <= 1.2x: {ratio:.2f}x {'PASS' if ratio <= 1.2 else 'FAIL'}")
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "gpu.json").write_text(json.dumps(
        {"rows": args.rows, "epochs": args.epochs, "paramaudit_cuda_s": ours,
         "plain_cuda_s": plain, "paramaudit_cpu_s": cpu, "ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
