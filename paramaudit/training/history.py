"""What a training run records: the per-epoch History, and the error a non-finite loss raises."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from paramaudit.overfit import Curves


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
