"""Typed pipeline configuration: YAML in, validated pydantic models out.

A value in ``search.space`` is either a plain value (the hyperparameter is fixed) or a one-key
mapping that samples it: ``{choice: [...]}``, ``{uniform: [lo, hi]}``,
``{loguniform: [lo, hi]}`` or ``{randint: [lo, hi]}`` (hi excluded). The hyperparameters it may
name are the ones training and the registered models declare (:mod:`paramaudit.config.space`).

Read top to bottom: ``validators`` (the small checks), ``bounds`` (limits on a config's size),
``yaml_read`` (a YAML file within those limits), ``space`` (the search space), ``data_schema``
and ``schema`` (the pydantic models: the data sections, then the rest), ``describe`` (one-line
errors), ``build`` (raw mapping + overrides -> config).
"""

from __future__ import annotations

from paramaudit.config.bounds import (
    MAX_CONFIG_BYTES,
    MAX_CONFIG_DEPTH,
    MAX_CONFIG_NODES,
    MAX_EPOCHS,
    MAX_TRIALS,
    check_config_size,
)
from paramaudit.config.build import build_config, load_config
from paramaudit.config.data_schema import (
    BUILTIN_DATASETS,
    CLASSIFICATION_METRICS,
    REGRESSION_DATASETS,
    REGRESSION_METRICS,
    SCALERS,
    DataConfig,
    PreprocessConfig,
)
from paramaudit.config.describe import describe_validation_error
from paramaudit.config.schema import (
    OverfitConfig,
    PipelineConfig,
    RayConfig,
    SearchConfig,
    TrackingConfig,
    TrainConfig,
)
from paramaudit.config.space import (
    CONTINUOUS,
    DEFAULT_SPACE,
    DISTRIBUTIONS,
    declared_hyperparameters,
    resolve_hyperparameters,
)
from paramaudit.config.validators import HINT_LIMIT, MAX_CHOICES, QUOTE_LIMIT, quote
from paramaudit.config.yaml_read import read_yaml

__all__ = [
    "BUILTIN_DATASETS", "CLASSIFICATION_METRICS", "CONTINUOUS", "DEFAULT_SPACE", "DISTRIBUTIONS",
    "HINT_LIMIT", "MAX_CHOICES", "MAX_CONFIG_BYTES", "MAX_CONFIG_DEPTH", "MAX_CONFIG_NODES",
    "MAX_EPOCHS", "MAX_TRIALS", "QUOTE_LIMIT", "REGRESSION_DATASETS", "REGRESSION_METRICS",
    "SCALERS", "DataConfig", "OverfitConfig", "PipelineConfig", "PreprocessConfig", "RayConfig",
    "SearchConfig", "TrackingConfig", "TrainConfig", "build_config", "check_config_size",
    "declared_hyperparameters", "describe_validation_error", "load_config", "quote", "read_yaml",
    "resolve_hyperparameters",
]
