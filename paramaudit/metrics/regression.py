"""Regression metrics (R², RMSE, MAE in the target's original units) and the target scaler.

Training sees the target standardised on the training rows (:class:`TargetScaler`); every
metric here is in the original units. Two speeds, as for classification:
:func:`regression_metrics` (scikit-learn, the final model's few evaluations) and
:func:`epoch_regression_scores` (numpy only, every epoch of every trial).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

REGRESSION_SCALARS = ("r2", "rmse", "mae")  # of regression_metrics and mean_baseline


@dataclass(frozen=True)
class TargetScaler:
    """A regression target standardised with the training rows' mean and std.

    The model learns the standardised target (a loss and a learning rate that do not depend on
    the target's units); its predictions go back through :meth:`unscale` before any metric.
    """

    mean: float
    std: float

    @classmethod
    def fit(cls, y: Any) -> TargetScaler:
        """Mean and population std of ``y``; a constant target gets std 1."""
        v = np.asarray(y, dtype=np.float64)
        std = float(v.std()) if len(v) else 1.0
        return cls(float(v.mean()) if len(v) else 0.0, std if std > 0 else 1.0)

    def scale(self, y: Any) -> np.ndarray:
        """Original units -> standardised (float32, what the model trains on)."""
        return ((np.asarray(y, dtype=np.float64) - self.mean) / self.std).astype(np.float32)

    def unscale(self, z: Any) -> np.ndarray:
        """Standardised -> original units (float64)."""
        return np.asarray(z, dtype=np.float64) * self.std + self.mean

    def to_dict(self) -> dict[str, float]:
        """JSON-ready."""
        return {"mean": self.mean, "std": self.std}


def epoch_regression_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """R², RMSE and MAE with numpy (a trial computes them every epoch); equal to scikit-learn's
    r2_score, root_mean_squared_error and mean_absolute_error (a unit test checks)."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    err = y - p
    sse = float(err @ err)
    sst = float(((y - y.mean()) ** 2).sum()) if len(y) else 0.0
    n = max(len(y), 1)
    # scikit-learn's r2_score on a constant y_true: 1.0 for a perfect fit, else 0.0
    r2 = 1.0 - sse / sst if sst > 0 else (1.0 if sse == 0 else 0.0)
    return {"r2": r2, "rmse": math.sqrt(sse / n), "mae": float(np.abs(err).sum() / n)}


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """``{r2, rmse, mae, n}`` of one split, in the target's original units (scikit-learn)."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if len(y) == 0:
        raise ValueError("no rows to score")
    if p.shape != y.shape:
        raise ValueError(f"{len(p)} predictions for {len(y)} rows")
    return {"n": len(y), "r2": float(r2_score(y, p)),
            "rmse": float(math.sqrt(mean_squared_error(y, p))),
            "mae": float(mean_absolute_error(y, p))}
