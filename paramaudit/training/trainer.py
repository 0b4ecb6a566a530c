"""EpochTrainer: one model trained an epoch at a time, both splits measured after each epoch."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from paramaudit.metrics import TargetScaler, epoch_scores, softmax
from paramaudit.train_hyperparameters import BATCH_SIZE, CLASS_WEIGHT, LABEL_SMOOTHING, LOSS
from paramaudit.training.augment import augment_images
from paramaudit.training.evaluation import as_tensors, evaluate, measure, regression_measure
from paramaudit.training.history import History, NonFiniteLossError
from paramaudit.training.optim import class_weights, make_optimizer

# The train split is re-measured in eval mode every epoch (dropout off), as nanoGPT's
# estimate_loss does; on big data a fixed subset keeps that cheap.
TRAIN_EVAL_ROWS = 4096

class EpochTrainer:
    """Trains one model an epoch at a time and measures both splits after each epoch.

    One object per model lets k-fold cross-validation train its k models in lockstep, so a
    scheduler sees the mean over folds after every epoch. ``task="regression"`` standardises
    the target with ``target`` (None: fitted on these training rows, as every caller does).
    """

    def __init__(self, model: nn.Module, train: tuple[np.ndarray, np.ndarray],
                 val: tuple[np.ndarray, np.ndarray], hp: Mapping[str, Any], *, seed: int = 0,
                 augment_shape: tuple[int, ...] | None = None, restore_best: bool = True,
                 task: str = "classification", target: TargetScaler | None = None,
                 device: str | torch.device = "cpu") -> None:
        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.gen = torch.Generator().manual_seed(seed)
        self.regression = task == "regression"
        self.target = (target or TargetScaler.fit(train[1])) if self.regression else None
        if self.target is not None:
            self.y_tr_raw = np.asarray(train[1], np.float64)
            self.y_va_raw = np.asarray(val[1], np.float64)
            self.x_tr = torch.from_numpy(np.ascontiguousarray(train[0], np.float32))
            self.y_tr = torch.from_numpy(self.target.scale(train[1]))
            self.x_va = torch.from_numpy(np.ascontiguousarray(val[0], np.float32))
            self.y_va = torch.from_numpy(self.target.scale(val[1]))
            self.loss_name = LOSS.read(hp)
            if self.loss_name not in ("mse", "huber"):
                raise ValueError(f"unknown loss {self.loss_name!r}")
        else:
            self.x_tr, self.y_tr = as_tensors(*train)
            self.x_va, self.y_va = as_tensors(*val)
        self._to_device()
        sub = torch.randperm(len(self.y_tr), generator=self.gen)[:TRAIN_EVAL_ROWS]
        self.x_tr_eval, self.y_tr_eval = self.x_tr[sub.to(self.device)], self.y_tr[sub.to(self.device)]
        if self.target is not None:
            self.y_tr_eval_raw = self.y_tr_raw[sub.numpy()]
        self.optimizer = make_optimizer(model.parameters(), hp)
        self.weighting = CLASS_WEIGHT.read(hp)
        if self.weighting not in ("none", "balanced"):
            raise ValueError(f"unknown class_weight {self.weighting!r}")
        self.loss_weight: torch.Tensor | None = None  # set at the first batch: needs the class count
        # training loss only: val and test losses stay the plain cross-entropy
        self.label_smoothing = LABEL_SMOOTHING.read(hp)
        self.y_va_np = None if self.regression else np.asarray(val[1], np.int64)
        self.batch_size = BATCH_SIZE.read(hp)
        self.augment_shape = augment_shape
        self.restore_best = restore_best
        self.history = History(task="regression" if self.regression else "classification")
        self.best_loss, self.best_state, self.bad_epochs = math.inf, None, 0

    def _to_device(self) -> None:
        # the splits move once; batches are then indexed where they live (no per-batch copies)
        if self.device.type != "cpu":
            for name in ("x_tr", "y_tr", "x_va", "y_va"):
                setattr(self, name, getattr(self, name).to(self.device))

    def step(self) -> dict[str, float]:
        """One epoch of minibatch training, then eval-mode metrics of both splits."""
        epoch = len(self.history.val_loss)
        model, opt = self.model, self.optimizer
        model.train()
        order = torch.randperm(len(self.y_tr), generator=self.gen)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size].to(self.device)
            xb = self.x_tr[idx]
            if self.augment_shape is not None:
                xb = augment_images(xb, self.augment_shape, self.gen)
            opt.zero_grad(set_to_none=True)
            logits = model(xb)
            if self.target is not None:
                loss = self._regression_loss(logits, self.y_tr[idx])
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(f"loss became {loss.item()} at epoch {epoch + 1}")
                loss.backward()
                opt.step()
                continue
            if self.weighting == "balanced" and self.loss_weight is None:
                self.loss_weight = torch.as_tensor(
                    class_weights(self.y_tr.cpu().numpy(), logits.shape[1]), dtype=logits.dtype,
                    device=logits.device)
            loss = nn.functional.cross_entropy(logits, self.y_tr[idx], weight=self.loss_weight,
                                               label_smoothing=self.label_smoothing)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"loss became {loss.item()} at epoch {epoch + 1}")
            loss.backward()
            opt.step()
        if self.target is not None:
            return self._regression_epoch(epoch)
        tr_loss, tr_acc = evaluate(model, self.x_tr_eval, self.y_tr_eval)
        va_loss, va_acc, va_logits = measure(model, self.x_va, self.y_va)
        if not (math.isfinite(tr_loss) and math.isfinite(va_loss)):
            raise NonFiniteLossError(f"loss became non-finite at epoch {epoch + 1}")
        scores = epoch_scores(self.y_va_np, softmax(va_logits.numpy()))
        h = self.history
        h.train_loss.append(tr_loss)
        h.train_accuracy.append(tr_acc)
        h.val_loss.append(va_loss)
        h.val_accuracy.append(va_acc)
        self._track_best(va_loss, epoch)
        return {"train_loss": tr_loss, "train_accuracy": tr_acc,
                "val_loss": va_loss, "val_accuracy": va_acc,
                **{f"val_{k}": v for k, v in scores.items()},
                "val_log_loss": va_loss}  # the same cross-entropy, by its scikit-learn name

    def _regression_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pred = out.reshape(-1)
        if self.loss_name == "huber":
            return nn.functional.huber_loss(pred, y, delta=1.0)
        return nn.functional.mse_loss(pred, y)

    def _regression_epoch(self, epoch: int) -> dict[str, float]:
        assert self.target is not None
        tr_loss, tr, _ = regression_measure(self.model, self.x_tr_eval, self.y_tr_eval_raw,
                                             self.target)
        va_loss, va, _ = regression_measure(self.model, self.x_va, self.y_va_raw, self.target)
        if not (math.isfinite(tr_loss) and math.isfinite(va_loss)):
            raise NonFiniteLossError(f"loss became non-finite at epoch {epoch + 1}")
        h = self.history
        h.train_loss.append(tr_loss)
        h.train_r2.append(tr["r2"])
        h.val_loss.append(va_loss)
        h.val_r2.append(va["r2"])
        self._track_best(va_loss, epoch)
        return {"train_loss": tr_loss, "train_r2": tr["r2"], "val_loss": va_loss,
                "val_r2": va["r2"], "val_rmse": va["rmse"], "val_mae": va["mae"]}

    def _track_best(self, va_loss: float, epoch: int) -> None:
        if va_loss < self.best_loss:
            self.best_loss, self.bad_epochs, self.history.best_epoch = va_loss, 0, epoch
            if self.restore_best:
                self.best_state = copy.deepcopy(self.model.state_dict())
        else:
            self.bad_epochs += 1

    def finish(self) -> History:
        """Restore the best weights (when kept) and leave the model in eval mode, on the CPU
        (where the audit, the test metrics and the registered model read it)."""
        if self.restore_best and self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        self.model.to("cpu").eval()
        return self.history



STATE_FILE = "best_state.pt"


def save_best_state(trainer: EpochTrainer, folder: Path) -> Path:
    """The trainer's best weights (restore_best=True keeps them) as a file in ``folder``."""
    state = trainer.best_state if trainer.best_state is not None else trainer.model.state_dict()
    path = folder / STATE_FILE
    torch.save(state, path)
    return path
