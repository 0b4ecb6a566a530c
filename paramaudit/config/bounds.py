"""Bounds on what a config may ask, and the check of a raw config's size against them.

Each bound is far above what a real run needs, and far below what would never finish (or never
load). Error messages state them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_CONFIG_BYTES = 1 << 20  # a config file
MAX_CONFIG_NODES = 100_000  # values once YAML aliases are expanded (a real config has ~100)
MAX_CONFIG_DEPTH = 32  # nesting (a real config nests 6 deep)
MAX_TRIALS = 10_000  # search.trials, and the trials a grid search plans
MAX_EPOCHS = 10_000  # train.max_epochs, train.patience, search.grace_period

NESTED = f"nested more than {MAX_CONFIG_DEPTH} levels deep"
EXPANDED = (f"more than {MAX_CONFIG_NODES:,} values once its aliases (*name) are expanded; "
            "a config needs a few hundred")
RECURSIVE = "an alias (*name) inside the value it names: a recursive structure"
_TOO_MANY = f"more than {MAX_CONFIG_NODES:,} values; a config needs a few hundred"
_CYCLE = "a value inside itself: a recursive structure"


class TooLarge(ValueError):
    """A config beyond a bound: its message says which (size, expanded size, nesting)."""


def check_config_size(raw: Any) -> None:
    """Refuse a raw config (YAML, JSON or a flow's parameters) beyond the bounds on its size.

    Counts the values of the tree, a shared object once per place it appears (memoised, so the
    count is linear in the distinct objects); strings count their length against the bytes a
    config file may take. Raises :class:`TooLarge`, a ValueError that pydantic reports.
    """
    seen: dict[int, tuple[int, int]] = {}
    active: set[int] = set()

    def measure(value: Any, depth: int) -> tuple[int, int]:
        if isinstance(value, str | bytes):
            if len(value) > MAX_CONFIG_BYTES:
                raise TooLarge(f"a string of {len(value):,} characters, more than a config "
                               f"may hold ({MAX_CONFIG_BYTES:,})")
            return 1, 1
        if not isinstance(value, Mapping | list | tuple):
            return 1, 1
        key = id(value)
        if key in active:
            raise TooLarge(_CYCLE)
        if key not in seen:
            if depth > MAX_CONFIG_DEPTH:
                raise TooLarge(NESTED)
            total, height = 1, 1
            active.add(key)
            children = ([x for pair in value.items() for x in pair] if isinstance(value, Mapping)
                        else value)
            for child in children:
                size, below = measure(child, depth + 1)
                total, height = total + size, max(height, below + 1)
                if total > MAX_CONFIG_NODES:
                    raise TooLarge(_TOO_MANY)
            active.discard(key)
            seen[key] = (total, height)
        total, height = seen[key]
        if depth + height - 1 > MAX_CONFIG_DEPTH:
            raise TooLarge(NESTED)
        return total, height

    measure(raw, 1)
