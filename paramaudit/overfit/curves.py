"""The learning curves the rules read, and the float comparisons every rule shares."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# every comparison is strict with this slack, so a value equal to its threshold up to float
# rounding (0.90 - 0.85 vs 0.05) does not fire
_EPS = 1e-9


def _above(value: float, limit: float) -> bool:
    return value > limit + _EPS


def _finite(x: Any) -> bool:
    # accepts numpy scalars too (np.float32 is no float subclass); None and the like are not finite
    try:
        return math.isfinite(x)
    except TypeError:
        return False


@dataclass(frozen=True)
class Curves:
    """Per-epoch learning curves; epoch i is index i in every list, all of the same length.

    A regression's curves give ``train_r2`` and ``val_r2`` and leave the accuracies empty.
    """

    train_loss: list[float]
    val_loss: list[float]
    train_accuracy: list[float]
    val_accuracy: list[float]
    train_r2: list[float] | None = None
    val_r2: list[float] | None = None

    def __post_init__(self) -> None:
        if self.regression:
            scores = {"train_r2": len(self.train_r2 or ()), "val_r2": len(self.val_r2 or ())}
        else:
            scores = {"train_accuracy": len(self.train_accuracy),
                      "val_accuracy": len(self.val_accuracy)}
        lengths = {"train_loss": len(self.train_loss), "val_loss": len(self.val_loss), **scores}
        if lengths["val_loss"] == 0:
            raise ValueError("learning curves are empty: need at least one epoch")
        if len(set(lengths.values())) != 1:
            shown = ", ".join(f"{k}={v}" for k, v in lengths.items())
            raise ValueError(f"learning curves differ in length ({shown})")

    def __len__(self) -> int:
        return len(self.val_loss)

    @property
    def regression(self) -> bool:
        """Whether these are a regression's curves (R², not accuracy)."""
        return self.train_r2 is not None or self.val_r2 is not None

    @property
    def score_name(self) -> str:
        """What the score curves hold: accuracy, or R²."""
        return "R²" if self.regression else "accuracy"

    def scores(self, split: str) -> list[float]:
        """The train or val score curve: accuracy, or R² for a regression."""
        if self.regression:
            return list((self.train_r2 if split == "train" else self.val_r2) or [])
        return self.train_accuracy if split == "train" else self.val_accuracy

    def best_epoch(self) -> int:
        """Index of the minimum finite val loss (first on ties); the last epoch if none is
        finite, since that is the model training left behind."""
        best: int | None = None
        for i, v in enumerate(self.val_loss):
            if _finite(v) and (best is None or v < self.val_loss[best]):
                best = i
        return len(self.val_loss) - 1 if best is None else best
