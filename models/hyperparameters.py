"""What a hyperparameter is: its name, type, default and the values it allows.

Declarations are plain data, written next to the code that reads them (a model's builder, the
training loop's optimizer); the configuration layer turns them into checks and error messages,
so this module, like every model, imports nothing from the core.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TYPES = (int, float, str, bool)


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter the search may set, as the code that reads it declares it.

    ``type`` is int, float, str or bool. Numbers may be bounded the way pydantic's ``Field``
    bounds them (``gt``/``ge`` below, ``lt``/``le`` above); ``odd`` keeps only odd integers.
    A str takes one of ``choices``, or any string when none are given (a user's model may read
    an open name, e.g. a torchvision weights tag). ``only_when=(other, values)`` says the value is read only
    while hyperparameter ``other`` is one of ``values`` (momentum: only for sgd_momentum), so it
    is left out of what a run reports otherwise.
    """

    name: str
    type: type
    default: Any
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple[Any, ...] = ()
    odd: bool = False
    only_when: tuple[str, tuple[Any, ...]] | None = None
    help: str = field(default="", compare=False)  # two models may word the same thing differently

    def __post_init__(self) -> None:
        # mistakes in a declaration are the model author's, caught when the module is imported
        if not self.name.isidentifier():
            raise ValueError(f"hyperparameter name {self.name!r} is not an identifier")
        if self.type not in TYPES:
            raise TypeError(f"hyperparameter {self.name!r}: type must be one of int, float, str, bool")
        numeric = self.type in (int, float)
        bounded = any(b is not None for b in (self.gt, self.ge, self.lt, self.le))
        if bounded and not numeric:
            raise ValueError(f"hyperparameter {self.name!r}: only numbers take gt/ge/lt/le")
        if (self.gt is not None and self.ge is not None) or (self.lt is not None and self.le is not None):
            raise ValueError(f"hyperparameter {self.name!r}: give gt or ge, lt or le, not both")
        if self.choices and self.type is not str:
            raise ValueError(f"hyperparameter {self.name!r}: only a str takes choices")
        if self.odd and self.type is not int:
            raise ValueError(f"hyperparameter {self.name!r}: only an int can be odd")
        object.__setattr__(self, "choices", tuple(self.choices))

    def read(self, hp: Mapping[str, Any]) -> Any:
        """This hyperparameter's value in ``hp`` (its default when absent), as its type."""
        return self.type(hp.get(self.name, self.default))


def read_hyperparameters(declared: Iterable[Hyperparameter], hp: Mapping[str, Any]) -> dict[str, Any]:
    """The declared hyperparameters' values in ``hp``, defaults filled in: a builder's keyword args."""
    return {h.name: h.read(hp) for h in declared}
