"""Build the model a SPEC names, for the audit: ``module.path:callable`` or ``models:NAME``.

A SPEC imports and runs the user's code, by design; every failure of that code becomes a
``SpecError`` with a one-line message.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import torch
from torch import nn

from paramaudit.errors import SpecError

# Input shapes and class count of the digits data set, the registry models' default.
_REGISTRY_DEFAULTS: dict[str, tuple[tuple[int, ...], int]] = {
    "mlp": ((64,), 10),
    "cnn": ((1, 8, 8), 10),
}


def _one_line(text: object) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()


def _describe(exc: BaseException) -> str:
    msg = _one_line(exc)
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _build(spec: str, fn: Any, meta: bool) -> nn.Module:
    try:
        if meta:
            with torch.device("meta"):
                model = fn()
        else:
            model = fn()
    except Exception as exc:  # any failure of user code becomes one line, no traceback
        raise SpecError(f"building the model for SPEC {spec!r} raised {_describe(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise SpecError(
            f"SPEC {spec!r} returned {type(model).__module__}.{type(model).__qualname__}, "
            "not a torch.nn.Module"
        )
    return model


def _registered(name: str) -> bool:
    """True if ``name`` is one of paramaudit's built-in models (``models:NAME`` specs)."""
    try:
        from paramaudit.models import MODELS
    except Exception:  # reported by _load_registry_model
        return True
    return name in MODELS


def _user_models_package() -> bool:
    """True if ``import models`` finds a package other than paramaudit's own models folder
    (which a run from the checkout's root would otherwise find under that name)."""
    try:
        found = importlib.util.find_spec("models")
    except (ImportError, ValueError):
        return False
    if found is None or found.origin is None:
        return False
    import paramaudit.models as own

    return os.path.realpath(found.origin) != os.path.realpath(own.__file__ or "")


def _load_registry_model(spec: str, name: str, meta: bool) -> nn.Module:
    try:
        from paramaudit.models import MODELS, build_model
    except Exception as exc:
        raise SpecError(f"cannot import the model registry 'models': {_describe(exc)}") from exc
    if name not in MODELS:
        known = ", ".join(sorted(MODELS)) or "(none)"
        raise SpecError(f"SPEC {spec!r}: no registered model {name!r}; registered: {known}")
    input_shape, n_classes = _REGISTRY_DEFAULTS.get(name, ((64,), 10))
    return _build(spec, lambda: build_model(name, input_shape, n_classes), meta)


def _split_spec(spec: str) -> tuple[str, str]:
    """``"module.path:callable"`` -> ``("module.path", "callable")``, both stripped and non-empty."""
    if not isinstance(spec, str) or ":" not in spec:
        raise SpecError(
            f"SPEC {spec!r} must look like 'module.path:callable' or 'models:NAME' (no ':' found)"
        )
    mod_name, _, attr_path = spec.partition(":")
    mod_name, attr_path = mod_name.strip(), attr_path.strip()
    if not mod_name or not attr_path:
        raise SpecError(
            f"SPEC {spec!r} must look like 'module.path:callable' or 'models:NAME' "
            "(empty module or callable)"
        )
    return mod_name, attr_path


@contextlib.contextmanager
def _cwd_first_on_path() -> Iterator[None]:
    """The current directory leads ``sys.path`` for the duration, as ``python -m`` would have it."""
    cwd = os.getcwd()
    added = cwd not in sys.path[:1]
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added:
            try:
                sys.path.remove(cwd)
            except ValueError:  # the user's code may have removed it already
                pass


def _import_module(mod_name: str) -> ModuleType:
    try:
        return importlib.import_module(mod_name)
    except ImportError as exc:
        raise SpecError(f"cannot import module {mod_name!r}: {_one_line(exc)}") from exc
    except Exception as exc:  # a module that fails while executing, e.g. SyntaxError
        raise SpecError(f"importing module {mod_name!r} raised {_describe(exc)}") from exc


def _resolve_attr(spec: str, module: ModuleType, mod_name: str, attr_path: str) -> Any:
    """Follow the dotted ``attr_path`` from ``module``."""
    obj: Any = module
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise SpecError(
                f"module {mod_name!r} has no attribute {attr_path!r}"
                + (f" (missing {part!r})" if part != attr_path else "")
            ) from exc
        except Exception as exc:  # a property or module __getattr__ of the user's that raises
            raise SpecError(f"reading {spec!r} raised {_describe(exc)}") from exc
    return obj


def _model_from(spec: str, obj: Any, meta: bool) -> nn.Module:
    """``obj`` itself if it is a module instance, else what calling it builds."""
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise SpecError(
            f"SPEC {spec!r} names a {type(obj).__name__}, not a callable that builds a model"
        )
    return _build(spec, obj, meta)


def load_spec(spec: str, meta: bool = False) -> nn.Module:
    """Build the model a SPEC names: ``"module.path:callable"`` or ``"models:NAME"``.

    ``models:NAME`` is a built-in model when NAME is registered, else NAME in the user's own
    ``models`` package (paramaudit's are ``paramaudit.models`` and claim no top-level name).

    The callable (a dotted attribute path is allowed) is called with no arguments. The current
    working directory is searched first when importing. ``meta=True`` builds on the meta
    device, so no weight memory is allocated. An attribute that already is an
    ``nn.Module`` instance is returned as it is. Every failure raises ``SpecError`` with a
    one-line message.
    """
    mod_name, attr_path = _split_spec(spec)
    if mod_name == "models" and _registered(attr_path):
        return _load_registry_model(spec, attr_path, meta)

    # the user's callable runs with the directory still on the path: it may import more of it
    with _cwd_first_on_path():
        importlib.invalidate_caches()  # files written since the last import must be seen
        if mod_name == "models" and not _user_models_package():
            # no user package called models: the name was meant for the built-in registry
            return _load_registry_model(spec, attr_path, meta)
        module = _import_module(mod_name)
        obj = _resolve_attr(spec, module, mod_name, attr_path)
        return _model_from(spec, obj, meta)
