"""Model registry: a dict and a decorator, as in timm's ``register_model``.

Each model registers with the hyperparameters it reads (:class:`Hyperparameter`); the config
validates ``search.space`` against these declarations, so a new model needs no edit elsewhere.
The built-in models are registered from their declarations (:mod:`.declarations`) and their
torch modules imported on the first build, so that checking a config imports no torch. A user's
model (``package.module:build`` or ``file.py:build``, :mod:`.user`) is registered the same way,
under its reference, the first time a config or a build names it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from paramaudit.models.declarations import BUILTIN_MODELS
from paramaudit.models.hyperparameters import Hyperparameter, read_hyperparameters
from paramaudit.models.user import (
    BuilderError,
    Reference,
    declarations_of,
    is_reference,
    load_builder,
    make_builder,
    parse_reference,
)

if TYPE_CHECKING:
    from torch import nn

__all__ = ["MODELS", "BuilderError", "Hyperparameter", "adopt_models", "build_model", "model_declarations",
           "portable_models", "read_hyperparameters", "register_model", "register_reference"]

MODELS: dict[str, Callable[..., nn.Module]] = {}
# the hyperparameters each registered model reads, by model name (kept beside MODELS so that
# MODELS stays a plain name -> builder dict)
_DECLARED: dict[str, tuple[Hyperparameter, ...]] = {}


def register_model(name: str, hyperparameters: Iterable[Hyperparameter] = (),
                   ) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder ``fn(input_shape, n_outputs, **hyperparameters) -> nn.Module``.

    ``hyperparameters`` are the ones the builder reads. Two models may declare one name
    differently (a user's ``dropout`` may default to 0.1): a search space is checked against the
    models the run builds (paramaudit.config.space).
    """
    declared = tuple(hyperparameters)
    names = [h.name for h in declared]
    if len(set(names)) != len(names):
        raise ValueError(f"model {name!r} declares a hyperparameter twice: {', '.join(names)}")

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS[name] = fn
        _DECLARED[name] = declared
        return fn

    return wrap


def register_reference(name: str) -> str:
    """Import and register the user's builder ``name`` names; its registered name (a file's
    path made absolute). BuilderError, one line, when it cannot be imported or declared."""
    ref = parse_reference(name)
    if ref.name not in MODELS:
        builder = load_builder(ref)
        declared = declarations_of(ref, builder)
        register_model(ref.name, declared)(make_builder(ref, builder, declared))
    return ref.name


def references() -> dict[str, Reference]:
    """The user's models registered in this process, by registered name."""
    return {name: ref for name, fn in MODELS.items()
            if isinstance(ref := getattr(fn, "reference", None), Reference)}


def portable_models(names: Iterable[str]) -> dict[str, tuple[Callable[..., nn.Module],
                                                             tuple[Hyperparameter, ...]]]:
    """The user's models among ``names`` as (builder, declarations), to travel to Ray's workers.

    Their modules are pickled by value (cloudpickle's public ``register_pickle_by_value``), so a
    worker on another machine, where the user's file or package is not, builds them all the same.
    """
    import ray.cloudpickle

    out = {}
    for name in names:
        ref = references().get(name)
        if ref is None:
            continue
        top = ref.module if ref.path is not None else ref.module.split(".")[0]
        # a copy made in one step: the CLI's import thread may be adding modules meanwhile,
        # and iterating the live dict (even into a list) then raises
        for mod_name, module in sys.modules.copy().items():
            if module is not None and (mod_name == top or mod_name.startswith(top + ".")):
                ray.cloudpickle.register_pickle_by_value(module)
        out[name] = (MODELS[name], _DECLARED[name])
    return out


def adopt_models(models: dict[str, tuple[Callable[..., nn.Module], tuple[Hyperparameter, ...]]],
                 ) -> None:
    """Register what :func:`portable_models` sent (a Ray worker's side), where not yet known."""
    for name, (fn, declared) in models.items():
        if name not in MODELS:
            register_model(name, declared)(fn)


def model_declarations() -> dict[str, tuple[Hyperparameter, ...]]:
    """Every registered model's declared hyperparameters, by model name."""
    # a model removed from MODELS (tests do) takes its declarations with it
    return {name: _DECLARED.get(name, ()) for name in MODELS}


def build_model(name: str, input_shape: tuple[int, ...], n_classes: int, **hp: Any) -> nn.Module:
    """Build a registered model; unknown hyperparameters are ignored by each builder."""
    if name not in MODELS and is_reference(name):
        name = register_reference(name)
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
