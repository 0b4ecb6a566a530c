"""What the hyperparameters build for the loop: the optimiser, and the loss's class weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from paramaudit.train_hyperparameters import LEARNING_RATE, MOMENTUM, OPTIMIZER, OPTIMIZERS, WEIGHT_DECAY

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
