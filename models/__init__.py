"""Model registry: a dict and a decorator, as in timm's ``register_model``.

Each model registers with the hyperparameters it reads (:class:`Hyperparameter`); the config
validates ``search.space`` against these declarations, so a new model needs no edit elsewhere.
The built-in models are registered from their declarations (:mod:`.declarations`) and their
torch modules imported on the first build, so that checking a config imports no torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from paramaudit.models.declarations import BUILTIN_MODELS
from paramaudit.models.hyperparameters import Hyperparameter, read_hyperparameters

if TYPE_CHECKING:
    from torch import nn

__all__ = ["MODELS", "Hyperparameter", "build_model", "model_declarations", "read_hyperparameters",
           "register_model"]

MODELS: dict[str, Callable[..., nn.Module]] = {}
# the hyperparameters each registered model reads, by model name (kept beside MODELS so that
# MODELS stays a plain name -> builder dict)
_DECLARED: dict[str, tuple[Hyperparameter, ...]] = {}


def register_model(name: str, hyperparameters: Iterable[Hyperparameter] = (),
                   ) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder ``fn(input_shape, n_classes, **hyperparameters) -> nn.Module``.

    ``hyperparameters`` are the ones the builder reads. A name another registered model also
    declares must be declared the same way: the search space holds one value per name.
    """
    declared = tuple(hyperparameters)
    names = [h.name for h in declared]
    if len(set(names)) != len(names):
        raise ValueError(f"model {name!r} declares a hyperparameter twice: {', '.join(names)}")
    for other, theirs in model_declarations().items():
        by_name = {t.name: t for t in theirs}
        clash = next((h.name for h in declared if h.name in by_name and by_name[h.name] != h), None)
        if clash is not None and other != name:
            raise ValueError(f"model {name!r} declares {clash!r} unlike model {other!r} does; a name "
                             "has one meaning in the search space: declare it the same or rename it")

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS[name] = fn
        _DECLARED[name] = declared
        return fn

    return wrap


def model_declarations() -> dict[str, tuple[Hyperparameter, ...]]:
    """Every registered model's declared hyperparameters, by model name."""
    # a model removed from MODELS (tests do) takes its declarations with it
    return {name: _DECLARED.get(name, ()) for name in MODELS}


def build_model(name: str, input_shape: tuple[int, ...], n_classes: int, **hp: Any) -> nn.Module:
    """Build a registered model; unknown hyperparameters are ignored by each builder."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(MODELS))}")
    return MODELS[name](input_shape, n_classes, **hp)


def _register_builtin(name: str, module: str, builder: str,
                      declared: tuple[Hyperparameter, ...]) -> None:
    def build(input_shape: tuple[int, ...], n_classes: int, **hp: Any) -> nn.Module:
        # importing the module registers its builder in place of this one (same declarations)
        return getattr(importlib.import_module(module), builder)(input_shape, n_classes, **hp)

    build.__name__ = build.__qualname__ = builder
    build.__doc__ = f"The built-in model {name!r} ({module}.{builder}), imported on first use."
    register_model(name, declared)(build)


for _name, (_module, _builder, _declared) in BUILTIN_MODELS.items():
    _register_builtin(_name, _module, _builder, _declared)
