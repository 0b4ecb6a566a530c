"""Reading a YAML config within bounds: its size, nesting, alias expansion and duplicate keys.

:func:`read_yaml` returns a plain mapping or raises a one-line ConfigError; it never builds a
tree larger than the bounds in :mod:`paramaudit.config.bounds`, whatever the file holds.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from paramaudit.config.bounds import (
    EXPANDED,
    MAX_CONFIG_BYTES,
    MAX_CONFIG_DEPTH,
    MAX_CONFIG_NODES,
    NESTED,
    RECURSIVE,
    TooLarge,
)
from paramaudit.config.validators import QUOTE_LIMIT, clip, quote
from paramaudit.errors import ConfigError

# libyaml's parser when PyYAML has it: the pure-Python one takes seconds per MiB
_SafeBase: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPENS = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSES = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


class _DuplicateKey(yaml.MarkedYAMLError):
    """A key given twice in one mapping (PyYAML would silently keep the last)."""


def _measure_events(text: str) -> None:
    """Refuse YAML whose tree, aliases expanded, is too large, too deep or recursive.

    Aliases make a small file a DAG whose tree can be exponentially larger ("billion laughs"),
    and both the copy in build_config and pydantic walk that tree. This is one pass over the
    parser's events (no recursion), before anything is composed or constructed: each anchor's
    expanded size and height are recorded when it closes, so an alias costs one lookup, and the
    pass stops at the first value past a bound.
    """
    total = 0  # values so far, aliases expanded
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (expanded values, height)
    open_: list[list[Any]] = []  # per open collection: [depth, deepest below, anchor, total before]
    for event in yaml.parse(text, Loader=_SafeBase):
        if isinstance(event, yaml.DocumentStartEvent):
            anchors.clear()  # anchors are per document
            continue
        if isinstance(event, _CLOSES):
            depth, deepest, anchor, before = open_.pop()
            if anchor is not None:
                anchors[anchor] = (total - before, deepest - depth + 1)
            if open_:
                open_[-1][1] = max(open_[-1][1], deepest)
            continue
        if isinstance(event, yaml.AliasEvent):
            if any(entry[2] == event.anchor for entry in open_):
                raise TooLarge(RECURSIVE)
            size, height = anchors.get(event.anchor, (1, 1))  # undefined: the composer says so
        elif isinstance(event, yaml.ScalarEvent | yaml.MappingStartEvent | yaml.SequenceStartEvent):
            size, height = 1, 1
        else:
            continue
        depth = len(open_) + 1
        if total + size > MAX_CONFIG_NODES:
            raise TooLarge(EXPANDED)
        if depth + height - 1 > MAX_CONFIG_DEPTH:
            raise TooLarge(NESTED)
        if isinstance(event, _OPENS):
            open_.append([depth, depth, event.anchor, total])
        elif event.anchor is not None and not isinstance(event, yaml.AliasEvent):
            anchors[event.anchor] = (1, 1)
        if open_ and depth + height - 1 > open_[-1][1]:
            open_[-1][1] = depth + height - 1
        total += size


class _StrictLoader(_SafeBase):  # type: ignore[misc, valid-type]
    """safe_load that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    raise _DuplicateKey(problem=f"duplicate key {quote(key)}",
                                        problem_mark=key_node.start_mark)
                seen.add(key)
            except TypeError:  # an unhashable key: let PyYAML report it
                continue
        return super().construct_mapping(node, deep=deep)


def _load_bounded(text: str) -> Any:
    """``yaml.load`` with :class:`_StrictLoader` (a safe loader), once the events are measured."""
    _measure_events(text)
    return yaml.load(text, Loader=_StrictLoader)


def _read_bytes(p: Path, shown: str) -> bytes:
    if p.is_dir():
        raise ConfigError(f"config file {shown}: is a directory, not a YAML file")
    if not p.is_file():
        raise ConfigError(f"config file {shown}: not found")
    with p.open("rb") as fh:
        data = fh.read(MAX_CONFIG_BYTES + 1)  # never more: st_size can lie (/proc, a growing file)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {shown}: larger than {MAX_CONFIG_BYTES:,} bytes (1 MiB), "
                          "the most a config file may be; a config needs a few KB")
    return data


def _parse(data: bytes, shown: str) -> Any:
    """The YAML document in ``data``; any problem becomes one ConfigError line naming the file."""
    try:
        return _load_bounded(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file {shown}: not a text file") from None
    except TooLarge as err:
        raise ConfigError(f"config file {shown}: {err}") from None
    except ValueError as err:  # a constructor's int() or date(): a value that reads as neither
        text = str(err)
        if "integer string conversion" in text:  # CPython's int_max_str_digits
            text = f"a number has more than {sys.get_int_max_str_digits():,} digits"
        raise ConfigError(f"config file {shown}: a value does not load: {clip(text)}") from None
    except _DuplicateKey as err:
        line = err.problem_mark.line + 1 if err.problem_mark else "?"
        raise ConfigError(
            f"config file {shown}: {err.problem} at line {line}; "
            "a key given twice would silently replace the first: merge them"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"config file {shown}: YAML does not parse{where}: {clip(problem)}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping safely, within the bounds on size; a one-line ConfigError on any problem."""
    p = Path(path)
    shown = quote(str(p), 2 * QUOTE_LIMIT)
    raw = _parse(_read_bytes(p, shown), shown)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {shown}: the top level must be a mapping of keys")
    return raw
