"""Training loop: minibatch SGD-family optimisers, both splits measured every epoch, early stopping.

Every epoch reports, besides both splits' loss and accuracy, the val split's balanced accuracy,
macro F1, ROC AUC and log loss (paramaudit.metrics.SEARCH_METRICS: what ``search.metric`` may
name), from the val predictions it has already made, with numpy. Early stopping and the best
epoch stay on val loss. The final model is scored once on every split with the full metrics
and beside the majority-class baseline (FinalModel.test_metrics, FinalModel.baseline).

A regression (``task="regression"``: float targets, one output unit) trains on the target
standardised with its training rows' mean and std (metrics.TargetScaler) under the ``loss``
hyperparameter (mse or huber); train and val loss are the plain MSE of the standardised target
(whatever the training loss, so trials compare), and every epoch reports train and val R²,
val RMSE and val MAE in the target's original units. Its final model is scored the same way,
beside always predicting the training mean (metrics.mean_baseline).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from paramaudit.metrics import (
    TargetScaler,
    epoch_regression_scores,
    epoch_scores,
    softmax,
)
from paramaudit.overfit import Curves, divergence
from paramaudit.train_hyperparameters import (
    BATCH_SIZE,
    CLASS_WEIGHT,
    LABEL_SMOOTHING,
    LEARNING_RATE,
    LOSS,
    MOMENTUM,
    OPTIMIZER,
    OPTIMIZERS,
    WEIGHT_DECAY,
)

# The train split is re-measured in eval mode every epoch (dropout off), as nanoGPT's
# estimate_loss does; on big data a fixed subset keeps that cheap.
TRAIN_EVAL_ROWS = 4096


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


@dataclass
class History:
    """Per-epoch metrics of both splits; epoch i is index i. A classification fills the
    accuracy lists, a regression the R² ones (``task``)."""

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    train_r2: list[float] = field(default_factory=list)
    val_r2: list[float] = field(default_factory=list)
    task: str = "classification"
    best_epoch: int = -1
    stopped_early: bool = False
    # why training ended: "early_stopping", "divergence" or "max_epochs" (see StopRule)
    stopped_by: str | None = None
    stop_reason: str | None = None

    def curves(self) -> Curves:
        """The curves the overfitting verdict reads."""
        if self.task == "regression":
            return Curves(list(self.train_loss), list(self.val_loss), [], [],
                          train_r2=list(self.train_r2), val_r2=list(self.val_r2))
        return Curves(
            train_loss=list(self.train_loss),
            val_loss=list(self.val_loss),
            train_accuracy=list(self.train_accuracy),
            val_accuracy=list(self.val_accuracy),
        )

    def scores(self, split: str) -> list[float]:
        """``split``'s (train or val) score curve: accuracy, or R² for a regression."""
        return getattr(self, f"{split}_{'r2' if self.task == 'regression' else 'accuracy'}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return asdict(self)


# The optimisers make_optimizer builds, by the names paramaudit.train_hyperparameters lists.
_OPTIMIZER_CLASSES: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "sgd_momentum": torch.optim.SGD,  # with Nesterov momentum
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
}
assert tuple(_OPTIMIZER_CLASSES) == OPTIMIZERS, "train_hyperparameters.OPTIMIZERS is the list"


def make_optimizer(params: Any, hp: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The optimiser a hyperparameter set names, with its learning rate and weight decay."""
    name = OPTIMIZER.read(hp)
    if name not in _OPTIMIZER_CLASSES:
        raise ValueError(f"unknown optimizer {name!r}")
    kwargs: dict[str, Any] = {"lr": LEARNING_RATE.read(hp), "weight_decay": WEIGHT_DECAY.read(hp)}
    if name == "sgd_momentum":
        kwargs.update(momentum=MOMENTUM.read(hp), nesterov=True)
    return _OPTIMIZER_CLASSES[name](params, **kwargs)


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """``n / (k * n_c)`` for each class c of the training labels ``y`` (k: the classes present).

    scikit-learn's "balanced" weighting: a class's weights sum to n / k, the same for every
    class. A class with no training row gets 1.0, which no row ever reads.
    """
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.ones(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


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


def as_tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-copy float32 / int64 tensors over numpy arrays."""
    return torch.from_numpy(np.ascontiguousarray(x, np.float32)), torch.from_numpy(
        np.ascontiguousarray(y, np.int64)
    )


def augment_images(x: torch.Tensor, image_shape: tuple[int, ...], gen: torch.Generator,
                   noise: float = 0.1, max_shift: int = 1, max_degrees: float = 10.0) -> torch.Tensor:
    """Small random shifts, rotations and noise on a batch of flat or image rows (training only)."""
    n = x.shape[0]
    img = x.reshape(n, *image_shape)
    # drawn on the CPU generator (the same draws on every device), applied where the batch is
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(max_degrees)
    h, w = image_shape[-2], image_shape[-1]
    shift = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=gen).float()
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([
        torch.stack([cos, -sin, shift[:, 0] * 2 / w], dim=1),
        torch.stack([sin, cos, shift[:, 1] * 2 / h], dim=1),
    ], dim=1)
    grid = nn.functional.affine_grid(theta.to(x.device), list(img.shape), align_corners=False)
    out = nn.functional.grid_sample(img, grid, padding_mode="border", align_corners=False)
    out = out + noise * torch.randn(out.shape, generator=gen).to(x.device)
    return out.reshape(x.shape)


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


@dataclass(frozen=True)
class StopRule:
    """When a training run ends: the same rule for every trial and for the final model.

    After each epoch, in this order: val loss diverged from its minimum for ``divergence``
    ``(tolerance, k)`` epochs while train loss fell (overfit.divergence); no val-loss improvement
    for ``patience`` epochs; ``max_epochs`` reached. Trials and the final model sharing it is what
    makes the best trial's weights the final model's (pipeline.train_final) with no retraining.
    """

    max_epochs: int
    patience: int | None = None
    divergence: tuple[float, int] | None = None

    def check(self, trainer: EpochTrainer) -> tuple[str, str] | None:
        """``(kind, reason)`` when training ends after the epoch just trained, else None."""
        h = trainer.history
        if self.divergence is not None:
            why = divergence(h.train_loss, h.val_loss, *self.divergence)
            if why:
                return "divergence", why
        if self.patience is not None and trainer.bad_epochs >= self.patience:
            return "early_stopping", (f"early stopping: val loss did not improve for "
                                      f"{self.patience} epochs after epoch {h.best_epoch + 1}")
        if len(h.val_loss) >= self.max_epochs:
            return "max_epochs", f"the epoch budget ({self.max_epochs}) is spent"
        return None


def train_epochs(trainer: EpochTrainer, rule: StopRule,
                 ) -> Iterator[tuple[int, dict[str, float], tuple[str, str] | None]]:
    """Train epoch by epoch; yield ``(epoch, metrics, stop)``, ``stop`` set on the last epoch."""
    for epoch in range(rule.max_epochs):
        metrics = trainer.step()
        stop = rule.check(trainer)
        if stop is not None:
            h = trainer.history
            h.stopped_by, h.stop_reason = stop
            h.stopped_early = stop[0] != "max_epochs"
        yield epoch, metrics, stop
        if stop is not None:
            return


def fit(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    hp: Mapping[str, Any],
    *,
    max_epochs: int,
    patience: int | None = None,
    divergence: tuple[float, int] | None = None,
    seed: int = 0,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    restore_best: bool = True,
    augment_shape: tuple[int, ...] | None = None,
    task: str = "classification",
    device: str | torch.device = "cpu",
) -> History:
    """Train ``model`` in place until the StopRule ends it; restore the best weights."""
    trainer = EpochTrainer(model, train, val, hp, seed=seed, augment_shape=augment_shape,
                           restore_best=restore_best, task=task, device=device)
    for epoch, metrics, _ in train_epochs(trainer, StopRule(max_epochs, patience, divergence)):
        if on_epoch is not None:
            on_epoch(epoch, metrics)
    return trainer.finish()


def fit_folds(
    models: list[nn.Module],
    folds: list[tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]],
    hp: Mapping[str, Any],
    *,
    max_epochs: int,
    seed: int = 0,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    augment_shape: tuple[int, ...] | None = None,
    task: str = "classification",
    device: str | torch.device = "cpu",
) -> list[History]:
    """k-fold: train one model per fold in lockstep; report means and the fold-to-fold spread
    (of val accuracy, or val R² for a regression: ``fold{i}_val_<score>``)."""
    trainers = [EpochTrainer(m, tr, va, hp, seed=seed + i, augment_shape=augment_shape,
                             restore_best=False, task=task, device=device)
                for i, (m, (tr, va)) in enumerate(zip(models, folds, strict=True))]
    score = "val_r2" if task == "regression" else "val_accuracy"
    for epoch in range(max_epochs):
        per_fold = [t.step() for t in trainers]
        metrics = {k: float(np.mean([m[k] for m in per_fold])) for k in per_fold[0]}
        val_scores = [m[score] for m in per_fold]
        metrics[f"{score}_std"] = float(np.std(val_scores))
        metrics["val_loss_std"] = float(np.std([m["val_loss"] for m in per_fold]))
        for i, value in enumerate(val_scores):
            metrics[f"fold{i}_{score}"] = value
        if on_epoch is not None:
            on_epoch(epoch, metrics)
    return [t.finish() for t in trainers]


DEVICES = ("auto", "cpu", "cuda")


def resolve_device(setting: str) -> torch.device:
    """``train.device`` as a torch device: auto takes a GPU when one is visible, cuda insists."""
    if setting not in DEVICES:
        raise ValueError(f"train.device must be one of {', '.join(DEVICES)}, not {setting!r}")
    if setting == "cpu" or (setting == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("train.device is cuda, but no CUDA GPU is visible to this process "
                         "(torch.cuda.is_available() is false); use auto or cpu")
    return torch.device("cuda")


def task_of(splits: Any) -> str:
    """The splits' task: "classification" unless they say "regression"."""
    return getattr(splits, "task", "classification")


def n_outputs(splits: Any) -> int:
    """The model's output units: one per class, 1 for a regression."""
    return 1 if task_of(splits) == "regression" else int(splits.n_classes)


def image_shape(splits: Any) -> tuple[int, ...] | None:
    """The (channels, height, width) of image data, or None for tabular data."""
    shape = tuple(getattr(splits, "input_shape", ()))
    return shape if len(shape) == 3 else None


STATE_FILE = "best_state.pt"


def save_best_state(trainer: EpochTrainer, folder: Path) -> Path:
    """The trainer's best weights (restore_best=True keeps them) as a file in ``folder``."""
    state = trainer.best_state if trainer.best_state is not None else trainer.model.state_dict()
    path = folder / STATE_FILE
    torch.save(state, path)
    return path
