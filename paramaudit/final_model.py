"""The final model: the chosen configuration trained once more (or a trial's saved weights),
scored once on the test split with every metric and beside the baseline, optionally refit on
train + val (``train.refit``).

The loop itself (EpochTrainer, StopRule, fit) is :mod:`paramaudit.training`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from paramaudit.data.preprocessor import Preprocessor
from paramaudit.memory import measured_peak
from paramaudit.metrics import (
    TargetScaler,
    classification_metrics,
    majority_baseline,
    mean_baseline,
    regression_metrics,
    softmax,
)
from paramaudit.training import (
    STATE_FILE,
    EpochTrainer,
    History,
    RegressionOutput,
    as_tensors,
    fit,
    image_shape,
    measure,
    n_outputs,
    predict_proba,
    predict_regression,
    regression_measure,
    resolve_device,
    task_of,
)


@dataclass
class FinalModel:
    """The chosen configuration trained once more, and its one look at the test split.

    ``test_loss`` and ``test_accuracy`` stay for compatibility; ``test_metrics`` has them all
    (metrics.classification_metrics), ``baseline`` the same for always predicting the most
    frequent training class (metrics.majority_baseline), ``split_metrics`` the train and val
    splits' (the train split in full, in eval mode).
    """

    model: nn.Module
    history: History
    test_loss: float
    test_accuracy: float | None  # None for a regression: its score is test_metrics["r2"]
    hyperparameters: dict[str, Any]
    example: Any = None  # a few preprocessed test rows: the logged model's input example
    preprocessing: dict[str, Any] = field(default_factory=dict)
    # where the weights come from: "retrained", or "trial N" (its saved best weights)
    source: str = "retrained"
    test_metrics: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    split_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    class_labels: list[str] = field(default_factory=list)
    # refit on train + val (train.refit): the model the search chose, trained on the train
    # split alone and scored on test: what the overfitting rules judge (``history`` is its)
    selection: FinalModel | None = None
    task: str = "classification"
    # a regression's target standardisation, as this model learned it (RegressionOutput)
    target_scaler: TargetScaler | None = None
    # the numeric preprocessing this model's inputs went through (the winning trial's)
    preprocessor: Preprocessor | None = None
    # memory measured while this process trained it (paramaudit.memory.measured_peak); None
    # when its weights came from a trial
    train_memory: dict[str, Any] | None = None

    @property
    def test_score(self) -> float:
        """Test accuracy, or test R² for a regression."""
        if self.task == "regression":
            return float(self.test_metrics["r2"])
        assert self.test_accuracy is not None
        return self.test_accuracy

    def served_model(self) -> nn.Module:
        """What is logged and registered: a regression's model answers in original units."""
        if self.task == "regression" and self.target_scaler is not None:
            return RegressionOutput(self.model, self.target_scaler).eval()
        return self.model


def class_labels(splits: Any) -> list[str]:
    """The splits' class labels as strings (index i is label i); "0", "1", ... when unnamed."""
    names = getattr(splits, "class_names", None)
    return [str(c) for c in names] if names else [str(i) for i in range(splits.n_classes)]


def _target(splits: Any) -> TargetScaler:
    """The splits' target scaler (fitted on y_train), or one fitted now."""
    return getattr(splits, "target_scaler", None) or TargetScaler.fit(splits.y_train)


def _scored_regression(model: nn.Module, history: History, hp: Mapping[str, Any], splits: Any,
                       source: str, target: TargetScaler) -> FinalModel:
    x_te = torch.from_numpy(np.ascontiguousarray(splits.x_test, np.float32))
    test_loss, _, pred = regression_measure(model, x_te, splits.y_test, target)
    test = {**regression_metrics(splits.y_test, pred), "loss": test_loss}
    per_split = {name: regression_metrics(y, predict_regression(model, x, target))
                 for name, x, y in (("train", splits.x_train, splits.y_train),
                                    ("val", splits.x_val, splits.y_val))}
    return FinalModel(model, history, test_loss, None, dict(hp), splits.x_test[:5],
                      source=source, test_metrics=test,
                      baseline=mean_baseline(splits.y_train, splits.y_test),
                      split_metrics=per_split, task="regression", target_scaler=target)


def _scored(model: nn.Module, history: History, hp: Mapping[str, Any], splits: Any,
            source: str = "retrained", target: TargetScaler | None = None) -> FinalModel:
    """The final model with its one look at the test split, every split's metrics and the
    majority baseline's (a regression: the training mean's; ``target`` the scaler the model
    learned with, the splits' by default)."""
    if task_of(splits) == "regression":
        return _scored_regression(model, history, hp, splits, source, target or _target(splits))
    labels = class_labels(splits)
    x_te, y_te = as_tensors(splits.x_test, splits.y_test)
    test_loss, test_acc, logits = measure(model, x_te, y_te)
    test = classification_metrics(splits.y_test, softmax(logits.numpy()), labels)
    test["loss"] = test_loss  # the training loop's own cross-entropy, as test_loss
    per_split = {name: classification_metrics(y, predict_proba(model, x), labels)
                 for name, x, y in (("train", splits.x_train, splits.y_train),
                                    ("val", splits.x_val, splits.y_val))}
    return FinalModel(model, history, test_loss, test_acc, dict(hp), splits.x_test[:5],
                      source=source, test_metrics=test,
                      baseline=majority_baseline(splits.y_train, splits.y_test, labels),
                      split_metrics=per_split, class_labels=labels)


def train_best(splits: Any, model_name: str, hp: Mapping[str, Any], *, max_epochs: int,
               patience: int, seed: int, augment: bool = False,
               divergence: tuple[float, int] | None = None, device: str = "cpu") -> FinalModel:
    """Retrain the best hyperparameters with early stopping, then evaluate once on test."""
    from paramaudit.models import build_model

    torch.manual_seed(seed)
    model = build_model(model_name, tuple(splits.input_shape), n_outputs(splits), **hp)
    where = resolve_device(device)
    with measured_peak(where) as memory:
        history = fit(model, (splits.x_train, splits.y_train), (splits.x_val, splits.y_val), hp,
                      max_epochs=max_epochs, patience=patience, divergence=divergence, seed=seed,
                      restore_best=True, augment_shape=image_shape(splits) if augment else None,
                      task=task_of(splits), device=where)
    final = _scored(model, history, hp, splits)
    final.train_memory = memory
    return final


def refit(splits: Any, model_name: str, selection: FinalModel, *, epochs: int, seed: int,
          augment: bool = False, device: str = "cpu") -> FinalModel:
    """The chosen hyperparameters trained again on train + val for ``epochs``, scored on test.

    As scikit-learn's ``refit``: the search chose on val, the model served learns from every row
    the test split leaves. The epoch count is the one at which the chosen trial's val loss was
    lowest (there is no val split left to stop on). ``selection`` (the model trained on train
    alone, with its curves) stays beside it: the overfitting rules judge that one.
    """
    from paramaudit.models import build_model

    hp = selection.hyperparameters
    torch.manual_seed(seed)
    model = build_model(model_name, tuple(splits.input_shape), n_outputs(splits), **hp)
    x = np.concatenate([splits.x_train, splits.x_val])
    y = np.concatenate([splits.y_train, splits.y_val])
    where = resolve_device(device)
    with measured_peak(where) as memory:
        trainer = EpochTrainer(model, (x, y), (splits.x_val, splits.y_val), hp, seed=seed,
                               augment_shape=image_shape(splits) if augment else None,
                               restore_best=False, task=task_of(splits), device=where)
        for _ in range(max(1, epochs)):
            trainer.step()
        trainer.finish()
    final = _scored(model, selection.history, hp, splits,
                    source=f"refit on train + val, {max(1, epochs)} epochs",
                    target=trainer.target)
    # val is in this model's training rows: the held-out train/val scores are the selection's
    final.split_metrics = selection.split_metrics
    final.selection = selection
    final.train_memory = memory
    return final


def final_from_state(splits: Any, model_name: str, hp: Mapping[str, Any], state_dir: str | Path,
                     history: History, source: str) -> FinalModel:
    """The final model from a trial's saved best weights, evaluated once on test.

    Valid only when that trial trained exactly as train_best would: the same data, hyperparameters,
    seed and StopRule (pipeline.train_final checks it).
    """
    from paramaudit.models import build_model

    model = build_model(model_name, tuple(splits.input_shape), n_outputs(splits), **hp)
    state = torch.load(Path(state_dir) / STATE_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    return _scored(model, history, hp, splits, source=source)
