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

The package, top to bottom: ``history`` (what a run records), ``optim`` (the optimiser and class
weights the hyperparameters build), ``evaluation`` (eval-mode measuring and predicting),
``augment`` (image augmentation), ``trainer`` (EpochTrainer, one epoch at a time), ``loop``
(StopRule, fit, fit_folds), ``devices`` (train.device) and ``splits`` (what the data says about
the model's shape).
"""

from __future__ import annotations

from paramaudit.training.augment import augment_images
from paramaudit.training.devices import DEVICES, resolve_device
from paramaudit.training.evaluation import (
    RegressionOutput,
    as_tensors,
    evaluate,
    measure,
    predict_proba,
    predict_regression,
    predict_scaled,
    regression_measure,
)
from paramaudit.training.history import History, NonFiniteLossError
from paramaudit.training.loop import StopRule, fit, fit_folds, train_epochs
from paramaudit.training.optim import class_weights, make_optimizer
from paramaudit.training.splits import image_shape, n_outputs, task_of
from paramaudit.training.trainer import STATE_FILE, TRAIN_EVAL_ROWS, EpochTrainer, save_best_state

__all__ = [
    "DEVICES",
    "STATE_FILE",
    "TRAIN_EVAL_ROWS",
    "EpochTrainer",
    "History",
    "NonFiniteLossError",
    "RegressionOutput",
    "StopRule",
    "as_tensors",
    "augment_images",
    "class_weights",
    "evaluate",
    "fit",
    "fit_folds",
    "image_shape",
    "make_optimizer",
    "measure",
    "n_outputs",
    "predict_proba",
    "predict_regression",
    "predict_scaled",
    "regression_measure",
    "resolve_device",
    "save_best_state",
    "task_of",
    "train_epochs",
]
