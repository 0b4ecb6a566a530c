"""The tasks, the metrics each one reports to the search, and which way the search ranks each.

No maths here: the names and directions the config, the trials and the search runner share.
"""

from __future__ import annotations

TASK = "classification"  # the default task; a run's own is Splits.task
TASKS = ("classification", "regression")
# the score beside the loss in every learning curve: History.{train,val}_<score>
SCORE = {"classification": "accuracy", "regression": "r2"}

# What ``search.metric`` may name, and whether the search minimises or maximises it. The trials
# report every one of them every epoch (training.EpochTrainer.step). val_log_loss is val_loss
# under its scikit-learn name: the same mean cross-entropy of the val split. The default stays
# val_loss, a proper scoring rule a lopsided table cannot fool (why: config SearchConfig.metric).
SEARCH_METRICS: dict[str, str] = {
    "val_loss": "min",
    "val_accuracy": "max",
    "val_balanced_accuracy": "max",
    "val_f1_macro": "max",
    "val_roc_auc": "max",
    "val_log_loss": "min",
    "val_rmse": "min",
    "val_mae": "min",
    "val_r2": "max",
}
# the search metrics only one task reports (val_loss: both; the mean MSE of the standardised
# target for regression, the mean cross-entropy for classification)
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("val_accuracy", "val_balanced_accuracy", "val_f1_macro", "val_roc_auc",
                       "val_log_loss"),
    "regression": ("val_rmse", "val_mae", "val_r2"),
}


def metric_mode(metric: str) -> str:
    """"min" or "max": how the search ranks ``metric`` (one of SEARCH_METRICS)."""
    try:
        return SEARCH_METRICS[metric]
    except KeyError:
        raise ValueError(f"unknown search metric {metric!r}; one of "
                         f"{', '.join(SEARCH_METRICS)}") from None
