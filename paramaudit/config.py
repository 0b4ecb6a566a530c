"""Typed pipeline configuration: YAML in, validated pydantic models out.

A value in ``search.space`` is either a plain value (the hyperparameter is fixed) or a one-key
mapping that samples it: ``{choice: [...]}``, ``{uniform: [lo, hi]}``,
``{loguniform: [lo, hi]}`` or ``{randint: [lo, hi]}`` (hi excluded).
"""

from __future__ import annotations

import copy
import difflib
import math
import reprlib
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from paramaudit.errors import ConfigError

BUILTIN_DATASETS = ("digits", "iris", "wine", "breast_cancer")
OPTIMIZERS = ("sgd", "sgd_momentum", "adam", "adamw", "rmsprop")
ACTIVATIONS = ("relu", "gelu", "tanh", "leaky_relu", "silu", "elu")
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")

# Bounds on what a config may ask: each is far above what a real run needs, and far below what
# would never finish (or never load). Errors state them.
MAX_CONFIG_BYTES = 1 << 20  # a config file
MAX_CONFIG_NODES = 100_000  # values once YAML aliases are expanded (a real config has ~100)
MAX_CONFIG_DEPTH = 32  # nesting (a real config nests 6 deep)
MAX_TRIALS = 10_000  # search.trials, and the trials a grid search plans
MAX_EPOCHS = 10_000  # train.max_epochs, train.patience, search.grace_period
MAX_CHOICES = 1_000  # values of one {choice: [...]}
QUOTE_LIMIT = 80  # characters of a user's value an error message quotes
HINT_LIMIT = 64  # longer values get no did-you-mean (difflib is quadratic, and no key is that long)

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


def _hint(value: Any, options: Any, cutoff: float = 0.6) -> str | None:
    """The closest option to a short string, for did-you-mean; None for anything else."""
    if not isinstance(value, str) or len(value) > HINT_LIMIT:
        return None
    close = difflib.get_close_matches(value, list(options), n=1, cutoff=cutoff)
    return close[0] if close else None


def _positive_float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"must be a positive number, got {quote(v)}")
    return float(v)


def _nonneg_float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        raise ValueError(f"must be a number >= 0, got {quote(v)}")
    return float(v)


def _unit_interval(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < 1:
        raise ValueError(f"must be a number in [0, 1), got {quote(v)}")
    return float(v)


def _too_large(v: int, high: int) -> ValueError:
    return ValueError(f"must be at most {high:,} (more than any real run needs), got {quote(v)}")


def _int_at_least(low: int, high: int) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"must be an integer >= {low}, got {quote(v)}")
        if v > high:
            raise _too_large(v, high)
        return v

    return check


def _one_of(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in options:
            hint = _hint(v, options)
            extra = f" (did you mean {hint!r}?)" if hint else ""
            raise ValueError(f"unknown value {quote(v)}{extra}; expected one of {', '.join(options)}")
        return v

    return check


MAX_KERNEL = 31


def _odd_kernel(v: Any) -> int:
    # the CNN pads by kernel_size // 2 to keep the image size, which needs an odd kernel
    if isinstance(v, bool) or not isinstance(v, int) or v < 1 or v % 2 == 0:
        raise ValueError(f"must be an odd integer >= 1 (1, 3, 5, ...), got {quote(v)}")
    if v > MAX_KERNEL:
        raise _too_large(v, MAX_KERNEL)
    return v


def _choices(values: list[Any]) -> list[Any]:
    if len(values) > MAX_CHOICES:
        raise ValueError(f"a choice of {len(values):,} values; at most {MAX_CHOICES:,}")
    return values


# Every hyperparameter the search may set, with the check a value must pass and its default.
# These are hyperparameters (set before training), never the parameters training learns.
HYPERPARAMETERS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "learning_rate": (_positive_float, 1e-3),
    "batch_size": (_int_at_least(1, 1_000_000), 64),
    "num_layers": (_int_at_least(0, 64), 2),
    "hidden_size": (_int_at_least(1, 65_536), 128),
    "dropout": (_unit_interval, 0.0),
    "weight_decay": (_nonneg_float, 0.0),
    "optimizer": (_one_of(OPTIMIZERS), "adam"),
    "momentum": (_unit_interval, 0.9),
    "activation": (_one_of(ACTIVATIONS), "relu"),
    # the small CNN's architecture (model: cnn)
    "channels": (_int_at_least(1, 65_536), 16),
    "kernel_size": (_odd_kernel, 3),
    "conv_layers": (_int_at_least(1, 64), 2),
}
CONTINUOUS = ("uniform", "loguniform")


def _check_distribution(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    check = HYPERPARAMETERS[name][0]
    if len(spec) != 1:
        raise ValueError(f"a sampled value is a one-key mapping ({', '.join(DISTRIBUTIONS)})")
    (kind, args), = spec.items()
    if kind not in DISTRIBUTIONS:
        hint = _hint(kind, DISTRIBUTIONS)
        extra = f" (did you mean {hint!r}?)" if hint else ""
        raise ValueError(f"unknown distribution {quote(kind)}{extra}; "
                         f"expected {', '.join(DISTRIBUTIONS)}")
    if not isinstance(args, list) or not args:
        raise ValueError(f"{kind} takes a non-empty list")
    if kind == "choice":
        return {kind: [check(v) for v in _choices(args)]}
    if len(args) != 2:
        raise ValueError(f"{kind} takes [low, high]")
    low, high = (check(v) for v in args)
    if kind == "randint" and not all(isinstance(v, int) for v in (low, high)):
        raise ValueError("randint takes two integers")
    if kind == "randint" and name == "kernel_size":
        raise ValueError("randint would give even kernel sizes; use choice of odd sizes, e.g. [3, 5]")
    if not low < high:
        raise ValueError(f"{kind} needs low < high, got [{low}, {high}]")
    if kind == "loguniform" and low <= 0:
        raise ValueError("loguniform needs low > 0")
    if kind in CONTINUOUS and name in ("batch_size", "num_layers", "hidden_size", "channels",
                                       "kernel_size", "conv_layers"):
        raise ValueError(f"{kind} gives fractions; {name} is an integer: use choice or randint")
    return {kind: [low, high]}


DEFAULT_SPACE: dict[str, Any] = {
    "learning_rate": {"loguniform": [1e-4, 1e-1]},
    "batch_size": {"choice": [32, 64, 128]},
    "num_layers": {"choice": [1, 2, 3]},
    "hidden_size": {"choice": [32, 64, 128, 256]},
    "dropout": {"uniform": [0.0, 0.5]},
    "weight_decay": {"loguniform": [1e-6, 1e-2]},
    "optimizer": {"choice": ["adam", "sgd", "rmsprop"]},
    "activation": "relu",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    """Where the data comes from and how it is split."""

    dataset: str | None = "digits"
    path: Path | None = None
    target: str | None = None
    val_size: float = Field(0.2, gt=0, lt=1)
    test_size: float = Field(0.2, gt=0, lt=1)
    max_rows: int | None = Field(None, ge=10, le=10**12,
                                 description="subsample to at most this many rows")
    categorical: Literal["error", "onehot"] = "error"
    image_shape: list[int] | None = Field(
        None, description="declare CSV features as images: [channels, height, width]")

    @field_validator("image_shape")
    @classmethod
    def _image(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (len(v) != 3 or any(not 1 <= d <= 65_536 for d in v)):
            raise ValueError("image_shape is [channels, height, width], each from 1 to 65,536")
        return v

    @model_validator(mode="before")
    @classmethod
    def _path_replaces_dataset(cls, values: Any) -> Any:
        # `path:` alone means a file, so the built-in default must not also apply
        if isinstance(values, dict) and values.get("path") is not None:
            values = {**values}
            values.setdefault("dataset", None)
        return values

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, name: str | None) -> str | None:
        return None if name is None else _one_of(BUILTIN_DATASETS)(name)

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if self.path is not None and self.dataset is not None:
            raise ValueError("give either dataset or path, not both")
        if self.path is None and self.dataset is None:
            raise ValueError("give a dataset name or a path")
        if self.path is not None and not self.target:
            raise ValueError("a data path needs a target column (target: NAME or --target)")
        if self.dataset is not None and self.target:
            raise ValueError(
                f"target names a column of a data file (path); the built-in data set "
                f"{self.dataset!r} has its own labels: drop target or give path"
            )
        if self.val_size + self.test_size >= 0.9:
            raise ValueError("val_size + test_size must leave at least 10% for training")
        return self


SCALERS = ("standard", "minmax", "robust", "none")


def _choice_or_value(value: Any, check: Callable[[Any], Any], what: str) -> Any:
    """A fixed value, or ``{choice: [...]}`` of values: preprocessing is searchable too."""
    if isinstance(value, Mapping):
        if set(value) != {"choice"} or not isinstance(value["choice"], list) or not value["choice"]:
            raise ValueError(f"{what}: a searched value is {{choice: [...]}} with a non-empty list")
        return {"choice": [check(v) for v in _choices(value["choice"])]}
    return check(value)


def _pca(v: Any) -> Any:
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


def _boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, got {quote(v)}")
    return v


class PreprocessConfig(_Strict):
    """How features are prepared before training; each choice can be searched like a hyperparameter."""

    scaler: Any = "standard"
    pca_components: Any = None
    augment: Any = False

    @field_validator("scaler")
    @classmethod
    def _scaler(cls, v: Any) -> Any:
        return _choice_or_value(v, _one_of(SCALERS), "scaler")

    @field_validator("pca_components")
    @classmethod
    def _pca_components(cls, v: Any) -> Any:
        return _choice_or_value(v, _pca, "pca_components")

    @field_validator("augment")
    @classmethod
    def _augment(cls, v: Any) -> Any:
        return _choice_or_value(v, _boolean, "augment")

    def searched(self) -> dict[str, list[Any]]:
        """The preprocessing choices the search varies, by name."""
        return {k: v["choice"] for k in ("scaler", "pca_components", "augment")
                if isinstance(v := getattr(self, k), dict)}

    def fixed(self) -> dict[str, Any]:
        """The preprocessing choices that are fixed."""
        return {k: v for k in ("scaler", "pca_components", "augment")
                if not isinstance(v := getattr(self, k), dict)}


class SearchConfig(_Strict):
    """The hyperparameter search: algorithm, budget, scheduler and space."""

    algorithm: Literal["random", "grid", "bayes"] = "random"
    trials: int = Field(16, ge=1, le=MAX_TRIALS)
    scheduler: Literal["asha", "none"] = "asha"
    grace_period: int = Field(3, ge=1, le=MAX_EPOCHS)
    reduction_factor: int = Field(3, ge=2, le=1_000)
    max_concurrent: int | None = Field(None, ge=1, le=MAX_TRIALS)
    metric: Literal["val_loss", "val_accuracy"] = "val_loss"
    max_params: int | None = Field(None, ge=1, le=10**15)
    max_params_per_sample: float | None = Field(None, gt=0)
    cv_folds: int | None = Field(None, ge=2, le=20, description="k-fold cross-validation per trial")
    space: dict[str, Any] = Field(default_factory=lambda: copy.deepcopy(DEFAULT_SPACE))

    @field_validator("space")
    @classmethod
    def _check_space(cls, space: dict[str, Any]) -> dict[str, Any]:
        if not space:
            raise ValueError("the search space is empty")
        checked: dict[str, Any] = {}
        for name, value in space.items():
            if name not in HYPERPARAMETERS:
                hint = _hint(name, HYPERPARAMETERS)
                extra = f" (did you mean {hint!r}?)" if hint else ""
                raise ValueError(f"unknown hyperparameter {quote(name)}{extra}")
            try:
                if isinstance(value, Mapping):
                    checked[name] = _check_distribution(name, value)
                else:
                    checked[name] = HYPERPARAMETERS[name][0](value)
            except ValueError as err:
                raise ValueError(f"{name}: {err}") from None
        return checked

    @model_validator(mode="after")
    def _grid_is_discrete(self) -> SearchConfig:
        if self.algorithm == "grid":
            for name, value in self.space.items():
                if isinstance(value, dict) and next(iter(value)) != "choice":
                    raise ValueError(
                        f"grid search needs a list of values for {name!r}, "
                        f"not a continuous range ({next(iter(value))})"
                    )
        return self

    def sampled(self) -> list[str]:
        """Names of the hyperparameters the search varies."""
        return [k for k, v in self.space.items() if isinstance(v, dict)]


class TrainConfig(_Strict):
    """Training budget for trials and for the final model."""

    max_epochs: int = Field(30, ge=1, le=MAX_EPOCHS)
    patience: int = Field(5, ge=1, le=MAX_EPOCHS)


class AuditConfig(_Strict):
    """Thresholds of the overfitting rules and the quality gate."""

    max_gap: float = Field(0.05, ge=0, description="train accuracy - val accuracy")
    max_loss_ratio: float | None = Field(None, gt=1, description="val loss / train loss")
    divergence_tolerance: float = Field(0.10, ge=0, description="relative rise above min val loss")
    divergence_epochs: int = Field(3, ge=1, le=MAX_EPOCHS)
    max_selection_optimism: float = Field(0.03, ge=0, description="val accuracy - test accuracy")
    max_params_per_sample: float = Field(100.0, gt=0)
    max_fold_spread: float = Field(0.05, ge=0)
    fail_on_overfit: bool = False
    register_on_warn: bool = True


class TrackingConfig(_Strict):
    """Where MLflow writes. None means MLFLOW_TRACKING_URI, then sqlite:///mlflow.db."""

    tracking_uri: str | None = None
    artifact_location: str | None = None
    registered_model_name: str | None = None
    log_model: bool = True


class RayConfig(_Strict):
    """Ray: an existing cluster's address, or the size of the local instance."""

    address: str | None = None
    num_cpus: int | None = Field(None, ge=1, le=4_096)
    object_store_memory: int | None = Field(None, ge=78_643_200, le=1 << 42)  # 75 MiB to 4 TiB


class PipelineConfig(_Strict):
    """The whole pipeline, as validated once at the edge and passed around typed."""

    experiment: str = Field("paramaudit", min_length=1, max_length=500)  # MLflow's own limit
    seed: int = Field(0, ge=0, le=2**32 - 1, description="numpy and scikit-learn take 0..2**32-1")
    smoke: bool = False
    model: Any = "mlp"
    data: DataConfig = Field(default_factory=DataConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    ray: RayConfig = Field(default_factory=RayConfig)

    @model_validator(mode="before")
    @classmethod
    def _bounded_input(cls, values: Any, info: ValidationInfo) -> Any:
        # Prefect's flow parameters come here without build_config, which measured already
        if isinstance(values, Mapping) and not (info.context or {}).get("measured"):
            check_config_size(values)
        return values

    @model_validator(mode="after")
    def _bounded_grid(self) -> PipelineConfig:
        if self.search.algorithm != "grid":
            return self
        # what tuning.planned_trials will compute: trials x the size of every searched choice
        sizes = {name: len(value["choice"]) for name, value in self.search.space.items()
                 if isinstance(value, dict) and "choice" in value}
        if isinstance(self.model, dict):
            sizes["model"] = len(self.model["choice"])
        sizes.update({k: len(v) for k, v in self.preprocess.searched().items()})
        grid = math.prod(max(1, n) for n in sizes.values())
        planned = self.search.trials * grid
        if planned > MAX_TRIALS:
            factors = " x ".join(f"{n:,} {name}" for name, n in
                                 sorted(sizes.items(), key=lambda kv: -kv[1])[:4] if n > 1)
            raise ValueError(
                f"search: this grid search plans {planned:,} trials (search.trials "
                f"{self.search.trials:,} x {grid:,} combinations: {factors}"
                f"{' x ...' if len(sizes) > 4 else ''}), more than {MAX_TRIALS:,}; give fewer "
                f"choices or a lower search.trials, or use algorithm: random with at most "
                f"{MAX_TRIALS:,} trials"
            )
        return self

    @field_validator("model")
    @classmethod
    def _known_model(cls, name: Any) -> Any:
        from paramaudit.models import MODELS

        return _choice_or_value(name, _one_of(tuple(sorted(MODELS))), "model")

    def model_choices(self) -> list[str]:
        """Every model the run may build."""
        return list(self.model["choice"]) if isinstance(self.model, dict) else [self.model]

    def effective(self) -> PipelineConfig:
        """The config as it runs: smoke mode shrinks trials and epochs to the minimum."""
        if not self.smoke:
            return self
        cfg = self.model_copy(deep=True)
        cfg.search.trials = min(cfg.search.trials, 2)
        cfg.search.grace_period = 1
        cfg.train.max_epochs = min(cfg.train.max_epochs, 2)
        cfg.train.patience = min(cfg.train.patience, 2)
        return cfg




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
    out += [("search", "space", hp) for hp in HYPERPARAMETERS] if not prefix else []
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
    hint = _hint(key, _fields_at(loc[:-1]))
    if hint:
        return f" (did you mean {hint!r}?)"
    close = _hint(key, [p[-1] for p in paths], cutoff=0.8)
    if close:
        dotted = next(".".join(p) for p in paths if p[-1] == close)
        return f" (did you mean {dotted!r}?)"
    return ""


def _clip(part: Any) -> str:
    """A key path's part or a message's text, cut like :func:`quote` cuts a value."""
    text = str(part) if isinstance(part, str) else quote(part)
    return text if len(text) <= QUOTE_LIMIT else f"{text[:QUOTE_LIMIT]}... ({len(text):,} characters)"


def describe_validation_error(err: ValidationError) -> str:
    """One line naming the first failing field and the problem, whatever the size of the input."""
    errors = err.errors(include_url=False)
    first = errors[0]
    loc = tuple(p for p in first["loc"] if not isinstance(p, int))
    where = ".".join(_clip(p) for p in loc)
    if first["type"] == "extra_forbidden":
        return f"config: unknown key {where!r}{_key_hint(loc)}"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "less_than_equal":
        msg = str(_too_large(first["input"], first["ctx"]["le"]))
    elif first["type"] == "string_too_long":
        msg = f"{msg}, got {quote(first['input'])}"
    more = len(errors) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"config: {where}: {msg}{tail}" if where else f"config: {msg}{tail}"


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    *parents, leaf = dotted.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[leaf] = value


class _DuplicateKey(yaml.MarkedYAMLError):
    """A key given twice in one mapping (PyYAML would silently keep the last)."""


class _TooLarge(ValueError):
    """A config beyond a bound: its message says which (size, expanded size, nesting)."""


_NESTED = f"nested more than {MAX_CONFIG_DEPTH} levels deep"
_EXPANDED = (f"more than {MAX_CONFIG_NODES:,} values once its aliases (*name) are expanded; "
             "a config needs a few hundred")
_RECURSIVE = "an alias (*name) inside the value it names: a recursive structure"
_TOO_MANY = f"more than {MAX_CONFIG_NODES:,} values; a config needs a few hundred"
_CYCLE = "a value inside itself: a recursive structure"


# libyaml's parser when PyYAML has it: the pure-Python one takes seconds per MiB
_SafeBase: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPENS = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSES = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def _measure_events(text: str) -> None:
    """Refuse YAML whose tree, aliases expanded, is too large, too deep or recursive.

    Aliases make a small file a DAG whose tree can be exponentially larger ("billion laughs"),
    and both the copy in :func:`build_config` and pydantic walk that tree. This is one pass over
    the parser's events (no recursion), before anything is composed or constructed: each anchor's
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
                raise _TooLarge(_RECURSIVE)
            size, height = anchors.get(event.anchor, (1, 1))  # undefined: the composer says so
        elif isinstance(event, yaml.ScalarEvent | yaml.MappingStartEvent | yaml.SequenceStartEvent):
            size, height = 1, 1
        else:
            continue
        depth = len(open_) + 1
        if total + size > MAX_CONFIG_NODES:
            raise _TooLarge(_EXPANDED)
        if depth + height - 1 > MAX_CONFIG_DEPTH:
            raise _TooLarge(_NESTED)
        if isinstance(event, _OPENS):
            open_.append([depth, depth, event.anchor, total])
        elif event.anchor is not None and not isinstance(event, yaml.AliasEvent):
            anchors[event.anchor] = (1, 1)
        if open_ and depth + height - 1 > open_[-1][1]:
            open_[-1][1] = depth + height - 1
        total += size


def check_config_size(raw: Any) -> None:
    """Refuse a raw config (YAML, JSON or a flow's parameters) beyond the bounds on its size.

    Counts the values of the tree, a shared object once per place it appears (memoised, so the
    count is linear in the distinct objects); strings count their length against the bytes a
    config file may take. Raises :class:`_TooLarge`, a ValueError that pydantic reports.
    """
    seen: dict[int, tuple[int, int]] = {}
    active: set[int] = set()

    def measure(value: Any, depth: int) -> tuple[int, int]:
        if isinstance(value, str | bytes):
            if len(value) > MAX_CONFIG_BYTES:
                raise _TooLarge(f"a string of {len(value):,} characters, more than a config "
                                f"may hold ({MAX_CONFIG_BYTES:,})")
            return 1, 1
        if not isinstance(value, Mapping | list | tuple):
            return 1, 1
        key = id(value)
        if key in active:
            raise _TooLarge(_CYCLE)
        if key not in seen:
            if depth > MAX_CONFIG_DEPTH:
                raise _TooLarge(_NESTED)
            total, height = 1, 1
            active.add(key)
            children = ([x for pair in value.items() for x in pair] if isinstance(value, Mapping)
                        else value)
            for child in children:
                size, below = measure(child, depth + 1)
                total, height = total + size, max(height, below + 1)
                if total > MAX_CONFIG_NODES:
                    raise _TooLarge(_TOO_MANY)
            active.discard(key)
            seen[key] = (total, height)
        total, height = seen[key]
        if depth + height - 1 > MAX_CONFIG_DEPTH:
            raise _TooLarge(_NESTED)
        return total, height

    measure(raw, 1)


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


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping safely, within the bounds on size; a one-line ConfigError on any problem."""
    p = Path(path)
    shown = quote(str(p), 2 * QUOTE_LIMIT)
    if p.is_dir():
        raise ConfigError(f"config file {shown}: is a directory, not a YAML file")
    if not p.is_file():
        raise ConfigError(f"config file {shown}: not found")
    with p.open("rb") as fh:
        data = fh.read(MAX_CONFIG_BYTES + 1)  # never more: st_size can lie (/proc, a growing file)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {shown}: larger than {MAX_CONFIG_BYTES:,} bytes (1 MiB), "
                          "the most a config file may be; a config needs a few KB")
    try:
        raw = _load_bounded(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file {shown}: not a text file") from None
    except _TooLarge as err:
        raise ConfigError(f"config file {shown}: {err}") from None
    except ValueError as err:  # a constructor's int() or date(): a value that reads as neither
        text = str(err)
        if "integer string conversion" in text:  # CPython's int_max_str_digits
            text = f"a number has more than {sys.get_int_max_str_digits():,} digits"
        raise ConfigError(f"config file {shown}: a value does not load: {_clip(text)}") from None
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
        raise ConfigError(f"config file {shown}: YAML does not parse{where}: {_clip(problem)}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {shown}: the top level must be a mapping of keys")
    return raw


def build_config(raw: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> PipelineConfig:
    """Validate a raw mapping plus dotted-key overrides (``{"search.trials": 4}``)."""
    try:
        check_config_size(raw)  # before the copy and pydantic walk an expanded tree
    except _TooLarge as err:
        raise ConfigError(f"config: {err}") from None
    data: dict[str, Any] = _deep_copy(dict(raw))
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        if dotted == "data.path":
            # a file on the command line replaces whatever data source the YAML named
            section = data.get("data") if isinstance(data.get("data"), dict) else {}
            section = {k: v for k, v in section.items() if k not in ("dataset", "path")}
            data["data"] = section
        if dotted == "data.dataset":
            section = data.get("data") if isinstance(data.get("data"), dict) else {}
            section = {k: v for k, v in section.items() if k not in ("path", "target")}
            data["data"] = section
        _set_dotted(data, dotted, value)
    try:
        return PipelineConfig.model_validate(data, context={"measured": True})
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err)) from None


def load_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> PipelineConfig:
    """Load a YAML config (or the embedded defaults when path is None) and apply overrides."""
    raw = read_yaml(path) if path is not None else {}
    return build_config(raw, overrides)


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


MODEL_HYPERPARAMETERS = {
    "mlp": ("num_layers", "hidden_size"),
    "cnn": ("channels", "kernel_size", "conv_layers"),
}
COMMON_HYPERPARAMETERS = ("learning_rate", "batch_size", "weight_decay", "optimizer", "dropout",
                          "activation")


def resolve_hyperparameters(fixed_and_sampled: Mapping[str, Any],
                            model: str = "mlp") -> dict[str, Any]:
    """The hyperparameters that shape this model and its training, defaults filled in.

    Ones the model or optimizer never reads (a CNN's kernel for an MLP, momentum for Adam) are
    left out, so reports and MLflow show only what mattered.
    """
    wanted = COMMON_HYPERPARAMETERS + MODEL_HYPERPARAMETERS.get(model, ())
    if fixed_and_sampled.get("optimizer", HYPERPARAMETERS["optimizer"][1]) == "sgd_momentum":
        wanted += ("momentum",)
    out = {name: HYPERPARAMETERS[name][1] for name in wanted}
    out.update({k: v for k, v in fixed_and_sampled.items() if k in wanted})
    return out
