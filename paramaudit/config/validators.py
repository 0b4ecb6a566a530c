"""The small checks a config value passes, and how an error message shows a user's value.

Each check takes a raw value and returns it (normalised) or raises a ValueError whose message
pydantic reports with the field's name; a message never quotes more than ``QUOTE_LIMIT``
characters of the value, whatever its size.
"""

from __future__ import annotations

import difflib
import math
import reprlib
from collections.abc import Callable, Mapping
from typing import Any

QUOTE_LIMIT = 80  # characters of a user's value an error message quotes
HINT_LIMIT = 64  # longer values get no did-you-mean (difflib is quadratic, and no key is that long)
MAX_CHOICES = 1_000  # values of one {choice: [...]}

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = QUOTE_LIMIT
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 2, 4, 3


def _digits(value: int) -> int:
    # an estimate: str() of an int above 4,300 digits raises (CPython's int_max_str_digits)
    return int(value.bit_length() * math.log10(2)) + 1


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` for an error message, cut to about ``limit`` characters whatever its size."""
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    if isinstance(value, int) and not isinstance(value, bool) and _digits(value) > 30:
        return f"an integer of about {_digits(value):,} digits"
    text = _REPR.repr(value)
    return text if len(text) <= 2 * limit else f"{text[:limit]}..."


def clip(part: Any) -> str:
    """A key path's part or a message's text, cut like :func:`quote` cuts a value."""
    text = str(part) if isinstance(part, str) else quote(part)
    return text if len(text) <= QUOTE_LIMIT else f"{text[:QUOTE_LIMIT]}... ({len(text):,} characters)"


def hint(value: Any, options: Any, cutoff: float = 0.6) -> str | None:
    """The closest option to a short string, for did-you-mean; None for anything else."""
    if not isinstance(value, str) or len(value) > HINT_LIMIT:
        return None
    close = difflib.get_close_matches(value, list(options), n=1, cutoff=cutoff)
    return close[0] if close else None


def did_you_mean(value: Any, options: Any) -> str:
    """`` (did you mean 'x'?)`` for a close option, else nothing."""
    close = hint(value, options)
    return f" (did you mean {close!r}?)" if close else ""


def too_large(v: int, high: int) -> ValueError:
    """The error of a count above its bound: the bound is far above what a real run needs."""
    return ValueError(f"must be at most {high:,} (more than any real run needs), got {quote(v)}")


def int_at_least(low: int | None, high: int | None = None, *, odd: bool = False) -> Callable[[Any], int]:
    """A check for an integer in ``[low, high]`` (odd ones only when ``odd``)."""
    first = 0 if low is None else low + 1 if low % 2 == 0 else low  # the smallest odd value allowed

    def check(v: Any) -> int:
        integer = not isinstance(v, bool) and isinstance(v, int)
        if odd and (not integer or v % 2 == 0 or (low is not None and v < low)):
            at_least = "" if low is None else f" >= {low} ({first}, {first + 2}, {first + 4}, ...)"
            raise ValueError(f"must be an odd integer{at_least}, got {quote(v)}")
        if not integer or (low is not None and v < low):
            raise ValueError(f"must be an integer{'' if low is None else f' >= {low}'}, got {quote(v)}")
        if high is not None and v > high:
            raise too_large(v, high)
        return v

    return check


def number_in(gt: float | None = None, ge: float | None = None, lt: float | None = None,
              le: float | None = None) -> Callable[[Any], float]:
    """A check for a finite number within the bounds given (pydantic's gt/ge/lt/le)."""
    expected = _range_words(gt, ge, lt, le)

    def check(v: Any) -> float:
        if (isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
                or (gt is not None and not v > gt) or (ge is not None and not v >= ge)
                or (lt is not None and not v < lt) or (le is not None and not v <= le)):
            raise ValueError(f"must be {expected}, got {quote(v)}")
        return float(v)

    return check


def _range_words(gt: float | None, ge: float | None, lt: float | None, le: float | None) -> str:
    """``a positive number``, ``a number >= 0``, ``a number in [0, 1)``: what number_in takes."""
    low, high = (gt if gt is not None else ge), (lt if lt is not None else le)
    if low is not None and high is not None:
        opening, closing = "(" if gt is not None else "[", ")" if lt is not None else "]"
        return f"a number in {opening}{low:g}, {high:g}{closing}"
    if gt == 0:
        return "a positive number"
    if low is not None:
        return f"a number {'>' if gt is not None else '>='} {low:g}"
    if high is not None:
        return f"a number {'<' if lt is not None else '<='} {high:g}"
    return "a finite number"


def one_of(options: tuple[Any, ...]) -> Callable[[Any], Any]:
    """A check for one of ``options``, with a did-you-mean for a near miss."""

    def check(v: Any) -> Any:
        if v not in options:
            raise ValueError(f"unknown value {quote(v)}{did_you_mean(v, options)}; "
                             f"expected one of {', '.join(map(str, options))}")
        return v

    return check


def boolean(v: Any) -> bool:
    """A check for true or false (YAML's booleans), never a truthy stand-in."""
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, got {quote(v)}")
    return v


def choices(values: list[Any]) -> list[Any]:
    """The values of a ``{choice: [...]}``, within the bound on how many."""
    if len(values) > MAX_CHOICES:
        raise ValueError(f"a choice of {len(values):,} values; at most {MAX_CHOICES:,}")
    return values


def choice_or_value(value: Any, check: Callable[[Any], Any], what: str) -> Any:
    """A fixed value, or ``{choice: [...]}`` of values: preprocessing is searchable too."""
    if isinstance(value, Mapping):
        if set(value) != {"choice"} or not isinstance(value["choice"], list) or not value["choice"]:
            raise ValueError(f"{what}: a searched value is {{choice: [...]}} with a non-empty list")
        return {"choice": [check(v) for v in choices(value["choice"])]}
    return check(value)


def pca(v: Any) -> Any:
    """preprocess.pca_components: none, a number of components, or a fraction of variance."""
    if v is None or v == "none":
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"must be none, a number of components or a variance fraction, got {quote(v)}")
    if isinstance(v, int) and 1 <= v <= 1_000_000:
        return v
    if isinstance(v, float) and 0 < v <= 1:
        return v
    raise ValueError(f"must be an integer from 1 to 1,000,000 or a fraction of variance in (0, 1], "
                     f"got {quote(v)}")
