"""The training loop: when a run ends (StopRule), and fit / fit_folds, which run it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from paramaudit.overfit import divergence
from paramaudit.training.history import History
from paramaudit.training.trainer import EpochTrainer


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
