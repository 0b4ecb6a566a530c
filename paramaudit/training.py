"""Training loop: minibatch SGD-family optimisers, both splits measured every epoch, early stopping."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from paramaudit.overfit import Curves

# The train split is re-measured in eval mode every epoch (dropout off), as nanoGPT's
# estimate_loss does; on big data a fixed subset keeps that cheap.
TRAIN_EVAL_ROWS = 4096


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


@dataclass
class History:
    """Per-epoch metrics of both splits; epoch i is index i."""

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False

    def curves(self) -> Curves:
        """The curves the overfitting verdict reads."""
        return Curves(
            train_loss=list(self.train_loss),
            val_loss=list(self.val_loss),
            train_accuracy=list(self.train_accuracy),
            val_accuracy=list(self.val_accuracy),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return asdict(self)


def make_optimizer(params: Any, hp: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The optimiser a hyperparameter set names, with its learning rate and weight decay."""
    name = hp.get("optimizer", "adam")
    lr = float(hp.get("learning_rate", 1e-3))
    wd = float(hp.get("weight_decay", 0.0))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd)
    if name == "sgd_momentum":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd,
                               momentum=float(hp.get("momentum", 0.9)), nesterov=True)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}")


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             batch_size: int = 2048) -> tuple[float, float]:
    """Mean cross-entropy and accuracy in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(y), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        logits = model(xb)
        loss_sum += float(nn.functional.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(1) == yb).sum())
    model.train(was_training)
    n = max(len(y), 1)
    return loss_sum / n, correct / n


def as_tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-copy float32 / int64 tensors over numpy arrays."""
    return torch.from_numpy(np.ascontiguousarray(x, np.float32)), torch.from_numpy(
        np.ascontiguousarray(y, np.int64)
    )


def fit(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    hp: Mapping[str, Any],
    *,
    max_epochs: int,
    patience: int | None = None,
    seed: int = 0,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    restore_best: bool = True,
) -> History:
    """Train ``model`` in place; early-stop on val loss and restore the best weights."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_tr, y_tr = as_tensors(*train)
    x_va, y_va = as_tensors(*val)
    sub = torch.randperm(len(y_tr), generator=gen)[:TRAIN_EVAL_ROWS]
    x_tr_eval, y_tr_eval = x_tr[sub], y_tr[sub]
    optimizer = make_optimizer(model.parameters(), hp)
    batch_size = int(hp.get("batch_size", 64))
    history = History()
    best_loss, best_state, bad_epochs = math.inf, None, 0
    model.train()
    for epoch in range(max_epochs):
        order = torch.randperm(len(y_tr), generator=gen)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x_tr[idx]), y_tr[idx])
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"loss became {loss.item()} at epoch {epoch + 1}")
            loss.backward()
            optimizer.step()
        tr_loss, tr_acc = evaluate(model, x_tr_eval, y_tr_eval)
        va_loss, va_acc = evaluate(model, x_va, y_va)
        if not (math.isfinite(tr_loss) and math.isfinite(va_loss)):
            raise NonFiniteLossError(f"loss became non-finite at epoch {epoch + 1}")
        history.train_loss.append(tr_loss)
        history.train_accuracy.append(tr_acc)
        history.val_loss.append(va_loss)
        history.val_accuracy.append(va_acc)
        if va_loss < best_loss:
            best_loss, bad_epochs, history.best_epoch = va_loss, 0, epoch
            if restore_best:
                best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
        if on_epoch is not None:
            on_epoch(epoch, {
                "train_loss": tr_loss, "train_accuracy": tr_acc,
                "val_loss": va_loss, "val_accuracy": va_acc,
            })
        if patience is not None and bad_epochs >= patience:
            history.stopped_early = True
            break
    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history


@dataclass
class FinalModel:
    """The chosen configuration trained once more, and its one look at the test split."""

    model: nn.Module
    history: History
    test_loss: float
    test_accuracy: float
    hyperparameters: dict[str, Any]


def train_best(splits: Any, model_name: str, hp: Mapping[str, Any], *, max_epochs: int,
               patience: int, seed: int) -> FinalModel:
    """Retrain the best hyperparameters with early stopping, then evaluate once on test."""
    from models import build_model

    torch.manual_seed(seed)
    model = build_model(model_name, tuple(splits.input_shape), splits.n_classes, **hp)
    history = fit(model, (splits.x_train, splits.y_train), (splits.x_val, splits.y_val), hp,
                  max_epochs=max_epochs, patience=patience, seed=seed, restore_best=True)
    test_loss, test_acc = evaluate(model, *as_tensors(splits.x_test, splits.y_test))
    return FinalModel(model, history, test_loss, test_acc, dict(hp))
