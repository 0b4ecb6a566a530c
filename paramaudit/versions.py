"""The version guards of the modules that reach into a library's internals."""

from __future__ import annotations

import re


def parse_version(version: str) -> tuple[int, int] | None:
    """(major, minor) of a version string, or None when it has no such prefix."""
    found = re.match(r"(\d+)\.(\d+)", version)
    return (int(found[1]), int(found[2])) if found else None


def in_range(version: str, tested: tuple[tuple[int, int], tuple[int, int]]) -> bool:
    """Whether ``version`` lies in ``tested``: from its first (major, minor), up to its second."""
    parsed = parse_version(version)
    return parsed is not None and tested[0] <= parsed < tested[1]
