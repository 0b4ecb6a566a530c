"""Eval-mode measuring and predicting: losses, accuracy, probabilities, regression outputs."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from paramaudit.metrics import TargetScaler, epoch_regression_scores, softmax


def as_tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-copy float32 / int64 tensors over numpy arrays."""
    return torch.from_numpy(np.ascontiguousarray(x, np.float32)), torch.from_numpy(
        np.ascontiguousarray(y, np.int64)
    )


@torch.no_grad()
def measure(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             batch_size: int = 2048) -> tuple[float, float, torch.Tensor]:
    """Mean cross-entropy, accuracy and the logits, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum, correct, outputs = 0.0, 0, []
    for start in range(0, len(y), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        logits = model(xb)
        loss_sum += float(nn.functional.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(1) == yb).sum())
        outputs.append(logits)
    model.train(was_training)
    n = max(len(y), 1)
    return loss_sum / n, correct / n, torch.cat(outputs).cpu() if outputs else torch.empty(0, 0)


@torch.no_grad()
def predict_scaled(model: nn.Module, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """A regression model's one output per row (the standardised target), in eval mode."""
    was_training = model.training
    model.eval()
    out = [model(x[start:start + batch_size]).reshape(-1) for start in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out).cpu() if out else torch.empty(0)


def regression_measure(model: nn.Module, x: torch.Tensor, y: np.ndarray, target: TargetScaler,
                        ) -> tuple[float, dict[str, float], np.ndarray]:
    """MSE of the standardised target, R²/RMSE/MAE in original units, the predictions (original
    units)."""
    pred = target.unscale(predict_scaled(model, x).numpy())
    z_err = (pred - np.asarray(y, np.float64)) / target.std
    loss = float(np.mean(z_err ** 2)) if len(z_err) else math.nan
    return loss, epoch_regression_scores(y, pred), pred


def predict_regression(model: nn.Module, x: np.ndarray, target: TargetScaler) -> np.ndarray:
    """A regression model's predictions of rows ``x``, in the target's original units."""
    return target.unscale(predict_scaled(model, torch.from_numpy(
        np.ascontiguousarray(x, np.float32))).numpy())


class RegressionOutput(nn.Module):
    """A regression model whose output is in the target's original units (what is logged and
    registered: raw predictions out, one column). Mean and std are buffers, not parameters."""

    def __init__(self, model: nn.Module, target: TargetScaler) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(target.mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(target.std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.std + self.mean


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             batch_size: int = 2048) -> tuple[float, float]:
    """Mean cross-entropy and accuracy in eval mode."""
    loss, acc, _ = measure(model, x, y, batch_size)
    return loss, acc


def predict_proba(model: nn.Module, x: np.ndarray, batch_size: int = 2048) -> np.ndarray:
    """Class probabilities (float64 softmax) of rows ``x`` in eval mode."""
    xt, yt = as_tensors(x, np.zeros(len(x), np.int64))
    _, _, logits = measure(model, xt, yt, batch_size)
    return softmax(logits.numpy())
