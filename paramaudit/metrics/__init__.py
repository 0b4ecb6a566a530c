"""Metrics that cannot flatter, the baselines they are read against, and their report views.

On a table with 3% positives, accuracy 0.97 is what always answering "no" scores. So every
model is reported with balanced accuracy (mean recall over the classes), macro F1, log loss,
ROC AUC, per-class precision and recall and its confusion matrix (:mod:`.classification`),
beside the same metrics of "always predict the most frequent training class"; a model that
does not beat that baseline by ``overfit.min_baseline_margin`` in balanced accuracy is said to be
no better than it and is not promoted (:mod:`.baseline`).

Regression (a numeric target, ``task: regression``) has its own three: R², RMSE and MAE in
the target's original units (:mod:`.regression`), read against "always predict the training
mean", compared in R² (the mean scores R² 0 on its own training rows, about that on any other).

What ``search.metric`` may name and which way each is ranked: :mod:`.search_metrics`. Tables
and plots for the reports: :mod:`.views`. This package re-exports every public name, so callers
keep importing from ``paramaudit.metrics``.

Pure numpy here (scikit-learn and matplotlib imported where used): no torch, no Prefect.
"""

from __future__ import annotations

from paramaudit.metrics.baseline import (
    DEFAULT_BASELINE_MARGIN,
    BaselineComparison,
    compare_to_baseline,
    majority_baseline,
    mean_baseline,
)
from paramaudit.metrics.classification import (
    EPOCH_SCORES,
    SCALARS,
    classification_metrics,
    epoch_scores,
    softmax,
)
from paramaudit.metrics.regression import (
    REGRESSION_SCALARS,
    TargetScaler,
    epoch_regression_scores,
    regression_metrics,
)
from paramaudit.metrics.search_metrics import (
    SCORE,
    SEARCH_METRICS,
    TASK,
    TASK_METRICS,
    TASKS,
    metric_mode,
)
from paramaudit.metrics.views import (
    comparison_markdown,
    confusion_markdown,
    confusion_rows,
    plot_confusion,
    plot_predictions,
    scalar_metrics,
)

__all__ = [
    "DEFAULT_BASELINE_MARGIN",
    "EPOCH_SCORES",
    "REGRESSION_SCALARS",
    "SCALARS",
    "SCORE",
    "SEARCH_METRICS",
    "TASK",
    "TASKS",
    "TASK_METRICS",
    "BaselineComparison",
    "TargetScaler",
    "classification_metrics",
    "compare_to_baseline",
    "comparison_markdown",
    "confusion_markdown",
    "confusion_rows",
    "epoch_regression_scores",
    "epoch_scores",
    "majority_baseline",
    "mean_baseline",
    "metric_mode",
    "plot_confusion",
    "plot_predictions",
    "regression_metrics",
    "scalar_metrics",
    "softmax",
]
