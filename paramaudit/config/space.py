"""The search space: what each declared hyperparameter accepts, and the values a run reads.

The hyperparameters are not written here: training declares its own (learning rate, batch size,
optimizer, ...; paramaudit.training) and each registered model declares the ones it reads
(``register_model(name, hyperparameters)``). This module turns those declarations into checks.
These are hyperparameters (set before training), never the parameters training learns.

A value in ``search.space`` is either a plain value (the hyperparameter is fixed) or a one-key
mapping that samples it: ``{choice: [...]}``, ``{uniform: [lo, hi]}``,
``{loguniform: [lo, hi]}`` or ``{randint: [lo, hi]}`` (hi excluded).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from paramaudit.config.validators import (
    boolean,
    choices,
    did_you_mean,
    int_at_least,
    number_in,
    one_of,
    quote,
)

if TYPE_CHECKING:
    from paramaudit.models import Hyperparameter

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")
CONTINUOUS = ("uniform", "loguniform")

# The space a config gets when it names none. Written once here in code; configs/default.yaml
# shows users the same space (a unit test keeps the two equal, order included: Ray Tune samples
# a space's hyperparameters in its order, so the order decides which trials a seed draws).
DEFAULT_SPACE: dict[str, Any] = {
    "learning_rate": {"loguniform": [3e-4, 3e-3]},
    "batch_size": {"choice": [32, 64]},
    "num_layers": 1,
    "hidden_size": {"choice": [256, 512, 1024]},
    "dropout": {"uniform": [0.1, 0.4]},
    "weight_decay": {"loguniform": [1e-4, 1e-2]},
    "optimizer": {"choice": ["adam", "adamw"]},
    "activation": "relu",
    "label_smoothing": 0.1,
}


def declared_hyperparameters() -> dict[str, Hyperparameter]:
    """Every hyperparameter the search may set, by name: training's, then each registered
    model's (the first model's declaration where two declare a name)."""
    return {name: hs[0] for name, hs in declarations_by_name().items()}


def declarations_by_name(models: Iterable[str] | None = None) -> dict[str, list[Hyperparameter]]:
    """Each name's declarations: training's, then those of ``models`` (None: every registered one).

    A model may not redeclare a training hyperparameter differently: both read the one value.
    """
    # imported here, not at the top: importing the config stays free of torch (the CLI's checks
    # and Ray's workers import it), and a model registered after import is still seen
    from paramaudit.models import model_declarations
    from paramaudit.train_hyperparameters import TRAINING_HYPERPARAMETERS

    out: dict[str, list[Hyperparameter]] = {h.name: [h] for h in TRAINING_HYPERPARAMETERS}
    registered = model_declarations()
    for model in registered if models is None else models:
        for h in registered.get(model, ()):
            same = out.setdefault(h.name, [])
            if same and same[0] in TRAINING_HYPERPARAMETERS and same[0] != h:
                raise ValueError(f"model {model!r} declares hyperparameter {h.name!r} unlike training "
                                 "does; a name has one meaning in the search space")
            if h not in same:
                same.append(h)
    return out


def check_of(h: Hyperparameter) -> Callable[[Any], Any]:
    """The check a fixed value (or one sampled value) of ``h`` must pass."""
    if h.type is int:
        return int_at_least(_int_bound(h.gt, h.ge, 1), _int_bound(h.lt, h.le, -1), odd=h.odd)
    if h.type is float:
        return number_in(h.gt, h.ge, h.lt, h.le)
    if h.type is bool:
        return boolean
    return one_of(h.choices) if h.choices else _a_string


def _a_string(v: Any) -> str:
    """An open str hyperparameter's value (one a user's model declares without choices)."""
    if not isinstance(v, str) or not v or len(v) > 200:
        raise ValueError(f"expected a non-empty string of at most 200 characters, got {quote(v)}")
    return v


def _int_bound(strict: float | None, inclusive: float | None, step: int) -> int | None:
    """An integer's gt/ge (step 1) or lt/le (step -1) bound as the inclusive bound."""
    if strict is not None:
        return int(strict) + step
    return None if inclusive is None else int(inclusive)


def check_value(name: str, value: Any,
                declared: Mapping[str, Hyperparameter | list[Hyperparameter]]) -> Any:
    """A space's entry for ``name``: a fixed value or a distribution, checked; ValueError if bad.

    Where several declarations hold the name, the value must fit every one.
    """
    if name not in declared:
        raise ValueError(f"unknown hyperparameter {quote(name)}{did_you_mean(name, declared)}")
    hs = declared[name]
    out = value
    for h in hs if isinstance(hs, list) else [hs]:
        try:
            out = (_check_distribution(h, value) if isinstance(value, Mapping)
                   else check_of(h)(value))
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
    return out


def _check_distribution(h: Hyperparameter, spec: Mapping[str, Any]) -> dict[str, Any]:
    check = check_of(h)
    if len(spec) != 1:
        raise ValueError(f"a sampled value is a one-key mapping ({', '.join(DISTRIBUTIONS)})")
    (kind, args), = spec.items()
    if kind not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {quote(kind)}{did_you_mean(kind, DISTRIBUTIONS)}; "
                         f"expected {', '.join(DISTRIBUTIONS)}")
    if not isinstance(args, list) or not args:
        raise ValueError(f"{kind} takes a non-empty list")
    if kind == "choice":
        return {kind: [check(v) for v in choices(args)]}
    if len(args) != 2:
        raise ValueError(f"{kind} takes [low, high]")
    low, high = (check(v) for v in args)
    _check_range(h, kind, low, high)
    return {kind: [low, high]}


def _check_range(h: Hyperparameter, kind: str, low: Any, high: Any) -> None:
    """What a uniform, loguniform or randint range over ``h`` needs, beyond its two values."""
    if h.type not in (int, float):
        raise ValueError(f"{kind} samples numbers; {h.name} takes one of its values: use choice")
    if kind == "randint" and not all(isinstance(v, int) for v in (low, high)):
        raise ValueError("randint takes two integers")
    if kind == "randint" and h.odd:
        raise ValueError(f"randint would give even values of {h.name}; use choice of odd values, "
                         "e.g. [3, 5]")
    if not low < high:
        raise ValueError(f"{kind} needs low < high, got [{low}, {high}]")
    if kind == "loguniform" and low <= 0:
        raise ValueError("loguniform needs low > 0")
    if kind in CONTINUOUS and h.type is int:
        raise ValueError(f"{kind} gives fractions; {h.name} is an integer: use choice or randint")


def check_space(space: Mapping[str, Any], models: Iterable[str] | None = None) -> dict[str, Any]:
    """``search.space`` with every entry checked against the declared hyperparameters.

    With ``models``, a name is checked against training's and those models' declarations (a
    name only another model reads passes: no model of this run reads it). Without, a value
    passes when it fits one registered declaration of its name.
    """
    if not space:
        raise ValueError("the search space is empty")
    if models is not None:
        chosen = declarations_by_name(models)
        every = declarations_by_name()
        return {name: check_value(name, value, chosen if name in chosen else every)
                for name, value in space.items()}
    every = declarations_by_name()
    return {name: _fits_one(name, value, every) for name, value in space.items()}


def _fits_one(name: str, value: Any, declared: Mapping[str, list[Hyperparameter]]) -> Any:
    if not declared.get(name):
        return check_value(name, value, declared)  # unknown: the did-you-mean
    first: ValueError | None = None
    for h in declared[name]:
        try:
            return check_value(name, value, {name: h})
        except ValueError as err:
            first = first or err
    assert first is not None
    raise first


def resolve_hyperparameters(fixed_and_sampled: Mapping[str, Any],
                            model: str = "mlp", task: str = "classification") -> dict[str, Any]:
    """The hyperparameters that shape this model and its training, defaults filled in.

    Ones the model or optimizer never reads (a CNN's kernel for an MLP, momentum for Adam,
    label smoothing for a regression ``task``, the regression ``loss`` for classification) are
    left out, so reports and MLflow show only what mattered.
    """
    from paramaudit.models import model_declarations
    from paramaudit.train_hyperparameters import TRAINING_HYPERPARAMETERS

    wanted = {h.name: h for h in (*TRAINING_HYPERPARAMETERS, *model_declarations().get(model, ()))}
    out = {name: fixed_and_sampled.get(name, h.default) for name, h in wanted.items()}
    context = {**out, "task": task}
    return {name: value for name, value in out.items() if _read(wanted[name], context)}


def _read(h: Hyperparameter, values: Mapping[str, Any]) -> bool:
    """Whether ``h`` is read, given the other values (``only_when``)."""
    if h.only_when is None:
        return True
    other, when = h.only_when
    return values.get(other) in when
