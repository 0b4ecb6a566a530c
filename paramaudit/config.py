"""Typed pipeline configuration: YAML in, validated pydantic models out.

A value in ``search.space`` is either a plain value (the hyperparameter is fixed) or a one-key
mapping that samples it: ``{choice: [...]}``, ``{uniform: [lo, hi]}``,
``{loguniform: [lo, hi]}`` or ``{randint: [lo, hi]}`` (hi excluded).
"""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from paramaudit.errors import ConfigError

BUILTIN_DATASETS = ("digits", "iris", "wine", "breast_cancer")
OPTIMIZERS = ("sgd", "sgd_momentum", "adam", "adamw", "rmsprop")
ACTIVATIONS = ("relu", "gelu", "tanh", "leaky_relu", "silu", "elu")
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")


def _positive_float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"must be a positive number, got {v!r}")
    return float(v)


def _nonneg_float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        raise ValueError(f"must be a number >= 0, got {v!r}")
    return float(v)


def _unit_interval(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < 1:
        raise ValueError(f"must be a number in [0, 1), got {v!r}")
    return float(v)


def _int_at_least(low: int) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"must be an integer >= {low}, got {v!r}")
        return v

    return check


def _one_of(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in options:
            hint = difflib.get_close_matches(str(v), options, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ValueError(f"unknown value {v!r}{extra}; expected one of {', '.join(options)}")
        return v

    return check


def _odd_at_least_1(v: Any) -> int:
    # the CNN pads by kernel_size // 2 to keep the image size, which needs an odd kernel
    if isinstance(v, bool) or not isinstance(v, int) or v < 1 or v % 2 == 0:
        raise ValueError(f"must be an odd integer >= 1 (1, 3, 5, ...), got {v!r}")
    return v


# Every hyperparameter the search may set, with the check a value must pass and its default.
# These are hyperparameters (set before training), never the parameters training learns.
HYPERPARAMETERS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "learning_rate": (_positive_float, 1e-3),
    "batch_size": (_int_at_least(1), 64),
    "num_layers": (_int_at_least(0), 2),
    "hidden_size": (_int_at_least(1), 128),
    "dropout": (_unit_interval, 0.0),
    "weight_decay": (_nonneg_float, 0.0),
    "optimizer": (_one_of(OPTIMIZERS), "adam"),
    "momentum": (_unit_interval, 0.9),
    "activation": (_one_of(ACTIVATIONS), "relu"),
    # the small CNN's architecture (model: cnn)
    "channels": (_int_at_least(1), 16),
    "kernel_size": (_odd_at_least_1, 3),
    "conv_layers": (_int_at_least(1), 2),
}
CONTINUOUS = ("uniform", "loguniform")


def _check_distribution(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    check = HYPERPARAMETERS[name][0]
    if len(spec) != 1:
        raise ValueError(f"a sampled value is a one-key mapping ({', '.join(DISTRIBUTIONS)})")
    (kind, args), = spec.items()
    if kind not in DISTRIBUTIONS:
        hint = difflib.get_close_matches(str(kind), DISTRIBUTIONS, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(f"unknown distribution {kind!r}{extra}; expected {', '.join(DISTRIBUTIONS)}")
    if not isinstance(args, list) or not args:
        raise ValueError(f"{kind} takes a non-empty list")
    if kind == "choice":
        return {kind: [check(v) for v in args]}
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
    max_rows: int | None = Field(None, ge=10, description="subsample to at most this many rows")
    categorical: Literal["error", "onehot"] = "error"
    image_shape: list[int] | None = Field(
        None, description="declare CSV features as images: [channels, height, width]")

    @field_validator("image_shape")
    @classmethod
    def _image(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (len(v) != 3 or any(d < 1 for d in v)):
            raise ValueError("image_shape is [channels, height, width], each >= 1")
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
        return {"choice": [check(v) for v in value["choice"]]}
    return check(value)


def _pca(v: Any) -> Any:
    if v is None or v == "none":
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"must be none, a number of components or a variance fraction, got {v!r}")
    if isinstance(v, int) and v >= 1:
        return v
    if isinstance(v, float) and 0 < v <= 1:
        return v
    raise ValueError(f"must be an integer >= 1 or a fraction of variance in (0, 1], got {v!r}")


def _boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, got {v!r}")
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
    trials: int = Field(16, ge=1)
    scheduler: Literal["asha", "none"] = "asha"
    grace_period: int = Field(3, ge=1)
    reduction_factor: int = Field(3, ge=2)
    max_concurrent: int | None = Field(None, ge=1)
    metric: Literal["val_loss", "val_accuracy"] = "val_loss"
    max_params: int | None = Field(None, ge=1)
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
                hint = difflib.get_close_matches(name, HYPERPARAMETERS, n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise ValueError(f"unknown hyperparameter {name!r}{extra}")
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

    max_epochs: int = Field(30, ge=1)
    patience: int = Field(5, ge=1)


class AuditConfig(_Strict):
    """Thresholds of the overfitting rules and the quality gate."""

    max_gap: float = Field(0.05, ge=0, description="train accuracy - val accuracy")
    max_loss_ratio: float | None = Field(None, gt=1, description="val loss / train loss")
    divergence_tolerance: float = Field(0.10, ge=0, description="relative rise above min val loss")
    divergence_epochs: int = Field(3, ge=1)
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
    num_cpus: int | None = Field(None, ge=1)
    object_store_memory: int | None = Field(None, ge=78_643_200)


class PipelineConfig(_Strict):
    """The whole pipeline, as validated once at the edge and passed around typed."""

    experiment: str = Field("paramaudit", min_length=1)
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

    @field_validator("model")
    @classmethod
    def _known_model(cls, name: Any) -> Any:
        from models import MODELS

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
    paths = [p for p in _all_keys() if p[:-1] != parent]
    elsewhere = [".".join(p) for p in paths if p[-1] == key]
    if elsewhere:
        return f" (did you mean {elsewhere[0]!r}? it belongs in another section)"
    hint = difflib.get_close_matches(key, _fields_at(loc[:-1]), n=1)
    if hint:
        return f" (did you mean {hint[0]!r}?)"
    close = difflib.get_close_matches(key, [p[-1] for p in paths], n=1, cutoff=0.8)
    if close:
        dotted = next(".".join(p) for p in paths if p[-1] == close[0])
        return f" (did you mean {dotted!r}?)"
    return ""


def describe_validation_error(err: ValidationError) -> str:
    """One line naming the first failing field and the problem."""
    first = err.errors()[0]
    loc = tuple(p for p in first["loc"] if not isinstance(p, int))
    where = ".".join(str(p) for p in loc) or "config"
    if first["type"] == "extra_forbidden":
        return f"config: unknown key {where!r}{_key_hint(loc)}"
    msg = first["msg"].removeprefix("Value error, ")
    more = len(err.errors()) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"config: {where}: {msg}{tail}"


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


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    raise _DuplicateKey(problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark)
                seen.add(key)
            except TypeError:  # an unhashable key: let PyYAML report it
                continue
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping safely; a one-line ConfigError on any problem."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config file {str(p)!r}: is a directory, not a YAML file")
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r}: not found")
    try:
        raw = yaml.load(p.read_text(encoding="utf-8"), Loader=_StrictLoader)  # a SafeLoader
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(p)!r}: not a text file") from None
    except _DuplicateKey as err:
        line = err.problem_mark.line + 1 if err.problem_mark else "?"
        raise ConfigError(
            f"config file {str(p)!r}: {err.problem} at line {line}; "
            "a key given twice would silently replace the first: merge them"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"config file {str(p)!r}: YAML does not parse{where}: {problem}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {str(p)!r}: the top level must be a mapping of keys")
    return raw


def build_config(raw: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> PipelineConfig:
    """Validate a raw mapping plus dotted-key overrides (``{"search.trials": 4}``)."""
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
        return PipelineConfig.model_validate(data)
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
