"""Model registry: a dict and a decorator, as in timm's ``register_model``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder ``fn(input_shape, n_classes, **hyperparameters) -> nn.Module``."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS[name] = fn
        return fn

    return wrap


def build_model(name: str, input_shape: tuple[int, ...], n_classes: int, **hp: Any) -> nn.Module:
    """Build a registered model; unknown hyperparameters are ignored by each builder."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(MODELS))}")
    return MODELS[name](input_shape, n_classes, **hp)


from paramaudit.models import cnn, mlp  # noqa: E402,F401  (registers the built-in models)
