"""One line for a failed validation: the field, the problem, and a did-you-mean for a near miss."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from paramaudit.config.schema import PipelineConfig
from paramaudit.config.space import declared_hyperparameters
from paramaudit.config.validators import HINT_LIMIT, clip, hint, quote, too_large


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys a config section accepts, for did-you-mean hints."""
    model: Any = PipelineConfig
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


def _all_keys(model: Any = None, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path the config accepts, hyperparameters under search.space included."""
    model = PipelineConfig if model is None else model
    out: list[tuple[str, ...]] = []
    for name, info in getattr(model, "model_fields", {}).items():
        path = (*prefix, name)
        out.append(path)
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            out += _all_keys(info.annotation, path)
    out += [("search", "space", hp) for hp in declared_hyperparameters()] if not prefix else []
    return out


def _key_hint(loc: tuple[Any, ...]) -> str:
    """Did-you-mean for an unknown key: the same key in another section (wrong nesting) first,
    then a close spelling in this section, then a close spelling anywhere."""
    key, parent = str(loc[-1]), tuple(str(p) for p in loc[:-1])
    if len(key) > HINT_LIMIT:
        return ""
    paths = [p for p in _all_keys() if p[:-1] != parent]
    elsewhere = [".".join(p) for p in paths if p[-1] == key]
    if elsewhere:
        return f" (did you mean {elsewhere[0]!r}? it belongs in another section)"
    local = hint(key, _fields_at(loc[:-1]))
    if local:
        return f" (did you mean {local!r}?)"
    close = hint(key, [p[-1] for p in paths], cutoff=0.8)
    if close:
        dotted = next(".".join(p) for p in paths if p[-1] == close)
        return f" (did you mean {dotted!r}?)"
    return ""


def describe_validation_error(err: ValidationError) -> str:
    """One line naming the first failing field and the problem, whatever the size of the input."""
    errors = err.errors(include_url=False)
    first = errors[0]
    loc = tuple(p for p in first["loc"] if not isinstance(p, int))
    where = ".".join(clip(p) for p in loc)
    if first["type"] == "extra_forbidden":
        return f"config: unknown key {where!r}{_key_hint(loc)}"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "less_than_equal":
        msg = str(too_large(first["input"], first["ctx"]["le"]))
    elif first["type"] == "string_too_long":
        msg = f"{msg}, got {quote(first['input'])}"
    more = len(errors) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"config: {where}: {msg}{tail}" if where else f"config: {msg}{tail}"
