"""A user's own model: ``package.module:build`` or ``path/to/file.py:build``, beside mlp and cnn.

A reference names a builder called as ``build(input_shape, n_outputs, **hyperparameters)`` (an
``nn.Module`` subclass with that constructor is one too). Its hyperparameters are what its
signature declares after those two (name, annotation, default), or, when the builder carries a
``hyperparameters`` attribute, that declaration (a sequence of :class:`Hyperparameter`). It is
registered under the reference itself, the way the built-in models are registered, so the rest of
the pipeline builds it by name like any other.

A file is imported as ``paramaudit_usercode.<stem>``, never under its bare stem, so a user's
``models.py`` claims no top-level name; the registered predictor ships it under the same name.
Like the other modules of paramaudit.models, this one imports nothing from the core.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from paramaudit.models.hyperparameters import TYPES, Hyperparameter

FILE_PACKAGE = "paramaudit_usercode"  # the package a user's model file is imported under
_FIRST = ("input_shape", "n_outputs")


class BuilderError(ValueError):
    """A user's builder that cannot be imported, declared or called: one line naming it."""


@dataclass(frozen=True)
class Reference:
    """Where a user's builder lives: a module (``module`` importable) or a file (``path``)."""

    module: str  # the import name: package.module, or paramaudit_usercode.<stem> for a file
    attr: str  # dotted attribute path inside the module
    path: Path | None = None  # the file, for a file reference

    @property
    def name(self) -> str:
        """The reference as the config names it (a file's path made absolute)."""
        return f"{self.path if self.path is not None else self.module}:{self.attr}"


def is_reference(name: object) -> bool:
    """Whether a config's ``model`` value names a user's builder rather than a registered name."""
    return isinstance(name, str) and ":" in name


def parse_reference(name: str, cwd: Path | None = None) -> Reference:
    """``pkg.mod:build`` or ``dir/file.py:build`` (relative to ``cwd``) as a :class:`Reference`."""
    where, _, attr = name.strip().rpartition(":")  # rpartition: a Windows path has a colon too
    where, attr = where.strip(), attr.strip()
    if not where or not attr or not all(part.isidentifier() for part in attr.split(".")):
        raise BuilderError(f"model {name!r}: expected 'package.module:build' or 'path/to/file.py:build'")
    if where.endswith(".py") or "/" in where or os.sep in where:
        path = Path(where).expanduser()
        path = (cwd or Path.cwd()) / path if not path.is_absolute() else path
        if not path.is_file():
            raise BuilderError(f"model {name!r}: no file {str(path)!r}")
        stem = path.stem if path.stem.isidentifier() else "_" + "".join(
            c if c.isalnum() else "_" for c in path.stem)
        return Reference(f"{FILE_PACKAGE}.{stem}", attr, path.resolve())
    if not all(part.isidentifier() for part in where.split(".")):
        raise BuilderError(f"model {name!r}: {where!r} is neither a module name nor a .py file")
    return Reference(where, attr)


@contextmanager
def _cwd_on_path() -> Iterator[None]:
    # the user's package sits where they run from, which a console script has not on sys.path
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def import_module(ref: Reference) -> ModuleType:
    """The module of a reference, imported once (a file under ``paramaudit_usercode``)."""
    if ref.module in sys.modules:
        return sys.modules[ref.module]
    try:
        if ref.path is None:
            with _cwd_on_path():
                return importlib.import_module(ref.module)
        return _import_file(ref.module, ref.path)
    except BuilderError:
        raise
    except ImportError as exc:
        raise BuilderError(f"model {ref.name!r}: cannot import {ref.module!r}: {_line(exc)}") from exc
    except Exception as exc:  # the user's module failing as it runs (SyntaxError, its own raise)
        raise BuilderError(f"model {ref.name!r}: importing it raised {_describe(exc)}") from exc


def _import_file(module: str, path: Path) -> ModuleType:
    package = sys.modules.get(FILE_PACKAGE)
    if package is None:
        # a namespace-like parent that holds nothing itself: only the files loaded into it
        package = ModuleType(FILE_PACKAGE)
        package.__path__ = []
        sys.modules[FILE_PACKAGE] = package
    spec = importlib.util.spec_from_file_location(module, path)
    if spec is None or spec.loader is None:
        raise BuilderError(f"model {str(path)!r}: not a Python file")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[module] = mod  # before it runs: dataclasses and pickle look themselves up there
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(module, None)
        raise
    setattr(package, module.rpartition(".")[2], mod)
    return mod


def load_builder(ref: Reference) -> Callable[..., Any]:
    """The callable a reference names; BuilderError when it is missing or not callable."""
    obj: Any = import_module(ref)
    for part in ref.attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise BuilderError(f"model {ref.name!r}: {ref.module!r} has no attribute "
                               f"{ref.attr!r}") from None
    if not callable(obj):
        raise BuilderError(f"model {ref.name!r} names a {type(obj).__name__}, not a builder "
                           "(a function or an nn.Module class)")
    return obj


def declarations_of(ref: Reference, builder: Callable[..., Any]) -> tuple[Hyperparameter, ...]:
    """The hyperparameters a builder reads: its ``hyperparameters`` attribute, else its signature."""
    declared = getattr(builder, "hyperparameters", None)
    if declared is not None:
        items = tuple(declared)
        bad = next((h for h in items if not isinstance(h, Hyperparameter)), None)
        if bad is not None:
            raise BuilderError(f"model {ref.name!r}: its hyperparameters attribute holds "
                               f"{type(bad).__name__}, not paramaudit.models.Hyperparameter")
        return items
    try:
        params = list(inspect.signature(builder).parameters.values())
    except (TypeError, ValueError) as exc:
        raise BuilderError(f"model {ref.name!r}: no signature to read ({_line(exc)})") from None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2 and not any(p.kind is p.VAR_POSITIONAL for p in params):
        raise BuilderError(f"model {ref.name!r} must take (input_shape, n_outputs, "
                           "**hyperparameters); its signature has "
                           f"({', '.join(p.name for p in params)})")
    hints = _hints(builder)
    out = []
    for p in positional[2:] + [p for p in params if p.kind is p.KEYWORD_ONLY]:
        h = _declaration(ref, p, hints.get(p.name, p.annotation))
        if h is not None:
            out.append(h)
    return tuple(out)


def _hints(builder: Callable[..., Any]) -> dict[str, Any]:
    target = builder.__init__ if inspect.isclass(builder) else builder
    try:
        return typing.get_type_hints(target)
    except Exception:  # annotations naming what the module does not define: read them raw
        return {}


def _declaration(ref: Reference, p: inspect.Parameter, annotation: Any) -> Hyperparameter | None:
    """One keyword parameter as a hyperparameter; None for one the search cannot set (a tensor)."""
    if p.default is inspect.Parameter.empty:
        raise BuilderError(f"model {ref.name!r}: hyperparameter {p.name!r} has no default; give it "
                           "one (the search space may still set it)")
    if typing.get_origin(annotation) is typing.Literal:
        values = typing.get_args(annotation)
        if values and all(isinstance(v, str) for v in values):
            return Hyperparameter(p.name, str, p.default, choices=values)
        annotation = type(values[0]) if values else inspect.Parameter.empty
    kind = annotation if annotation in TYPES else None
    if kind is None and annotation is inspect.Parameter.empty:
        kind = type(p.default) if type(p.default) in TYPES else None
    if kind is None or (p.default is not None and kind is float and isinstance(p.default, bool)):
        return None
    default = p.default
    if kind is float and isinstance(default, int) and not isinstance(default, bool):
        default = float(default)
    if not isinstance(default, kind):
        raise BuilderError(f"model {ref.name!r}: hyperparameter {p.name!r} is annotated "
                           f"{kind.__name__} but defaults to {default!r}")
    return Hyperparameter(p.name, kind, default)


def make_builder(ref: Reference, builder: Callable[..., Any], declared: tuple[Hyperparameter, ...],
                 ) -> Callable[..., Any]:
    """``fn(input_shape, n_outputs, **hp)`` that passes the builder only what it declares and
    checks what it returns: BuilderError with one line naming it, never its traceback."""
    names = {h.name for h in declared}

    def build(input_shape: tuple[int, ...], n_outputs: int, **hp: Any) -> Any:
        from torch import nn

        own = {k: v for k, v in hp.items() if k in names}
        try:
            model = builder(tuple(input_shape), int(n_outputs), **own)
        except Exception as exc:
            raise BuilderError(f"model {ref.name!r} raised {_describe(exc)} when built with "
                               f"input_shape={tuple(input_shape)}, n_outputs={n_outputs}"
                               f"{', ' + _args(own) if own else ''}") from exc
        if not isinstance(model, nn.Module):
            raise BuilderError(f"model {ref.name!r} returned {type(model).__module__}."
                               f"{type(model).__qualname__}, not a torch.nn.Module")
        return model

    build.__name__ = build.__qualname__ = getattr(builder, "__name__", "build")
    build.__doc__ = f"The user's model {ref.name!r}."
    build.reference = ref  # type: ignore[attr-defined]  # what the predictor ships
    return build


def _args(hp: dict[str, Any]) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in hp.items())
    return text if len(text) <= 200 else text[:200] + "..."


def _line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:300] + "..."


def _describe(exc: BaseException) -> str:
    msg = _line(exc)
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
