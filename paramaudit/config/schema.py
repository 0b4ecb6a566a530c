"""The typed configuration: pydantic models of every section, validated once at the edge.

The YAML keys are these models' fields (``overfit:`` holds :class:`OverfitConfig`; ``audit:``,
its old name, is read as it); values in
``search.space`` are checked against the hyperparameters training and the models declare
(:mod:`paramaudit.config.space`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from paramaudit.config.bounds import MAX_EPOCHS, MAX_TRIALS, check_config_size
from paramaudit.config.data_schema import (
    CLASSIFICATION_METRICS,
    IMAGE_DATASETS,
    REGRESSION_DATASETS,
    REGRESSION_METRICS,
    DataConfig,
    PreprocessConfig,
    _Strict,
)
from paramaudit.config.space import DEFAULT_SPACE, check_space
from paramaudit.config.validators import choice_or_value, one_of


class TrialResources(_Strict):
    """What Ray reserves for each trial. ``gpu`` may be a fraction (trials share a GPU); None
    shares the cluster's GPUs among the trials that run at once when train.device is not cpu."""

    cpu: float = Field(1.0, gt=0, le=1024)
    gpu: float | None = Field(None, ge=0, le=64)

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, gpu: float | None) -> float | None:
        if gpu is not None and gpu > 1 and gpu != int(gpu):
            raise ValueError(f"a trial takes a fraction of one GPU or whole GPUs, not {gpu:g}")
        return gpu


class SearchConfig(_Strict):
    """The hyperparameter search: algorithm, budget, scheduler and space."""

    algorithm: Literal["random", "grid", "bayes"] = "random"
    trials: int = Field(16, ge=1, le=MAX_TRIALS)
    scheduler: Literal["asha", "none"] = "asha"
    grace_period: int = Field(3, ge=1, le=MAX_EPOCHS)
    reduction_factor: int = Field(3, ge=2, le=1_000)
    max_concurrent: int | None = Field(None, ge=1, le=MAX_TRIALS)
    # What picks the best trial (paramaudit.metrics.SEARCH_METRICS has each one's direction).
    # val_loss by default: cross-entropy is a proper scoring rule, so a model that always
    # answers the majority class scores only the class priors' entropy, which any model that
    # learned something beats; val_accuracy rewards that same model with the majority's share
    # on a lopsided table. val_balanced_accuracy and val_f1_macro cannot be fooled that way
    # either but move in coarse steps on a small val split; val_roc_auc ignores calibration.
    # Regression: val_loss is the val MSE of the standardised target (1 - R² up to the val
    # split's own variance), val_rmse and val_mae in the target's units, val_r2.
    metric: Literal["val_loss", "val_accuracy", "val_balanced_accuracy", "val_f1_macro",
                    "val_roc_auc", "val_log_loss", "val_rmse", "val_mae", "val_r2"] = "val_loss"
    max_params: int | None = Field(None, ge=1, le=10**15)
    max_params_per_sample: float | None = Field(None, gt=0)
    cv_folds: int | None = Field(None, ge=2, le=20, description="k-fold cross-validation per trial")
    resources_per_trial: TrialResources = Field(default_factory=TrialResources)
    space: dict[str, Any] = Field(default_factory=lambda: copy.deepcopy(DEFAULT_SPACE))

    @field_validator("space")
    @classmethod
    def _check_space(cls, space: dict[str, Any]) -> dict[str, Any]:
        return check_space(space)

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
    refit: bool = Field(True, description="train the chosen configuration again on train + val "
                                          "for the final model (the verdict judges the trial's)")
    # auto: a GPU when this process (a trial: its Ray worker) sees one; cuda insists on one
    device: Literal["auto", "cpu", "cuda"] = "auto"


class OverfitConfig(_Strict):
    """Thresholds of the overfitting rules and the quality gate."""

    max_gap: float = Field(0.05, ge=0, description="train accuracy - val accuracy")
    max_r2_gap: float = Field(0.10, ge=0, description="regression: train R² - val R²")
    max_loss_ratio: float | None = Field(None, gt=1, description="val loss / train loss")
    divergence_tolerance: float = Field(0.10, ge=0, description="relative rise above min val loss")
    divergence_epochs: int = Field(3, ge=1, le=MAX_EPOCHS)
    max_selection_optimism: float = Field(0.03, ge=0, description="val accuracy - test accuracy")
    max_r2_optimism: float = Field(0.10, ge=0, description="regression: val R² - test R²")
    max_params_per_sample: float = Field(100.0, gt=0)
    max_fold_spread: float = Field(0.05, ge=0)
    min_baseline_margin: float = Field(
        0.02, ge=0, le=1, description="test balanced accuracy must beat always predicting the "
        "most frequent training class by this much (regression: test R² must beat always "
        "predicting the training mean), or the model is not promoted")
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


class RegistryConfig(_Strict):
    """Who becomes the registered model's champion (paramaudit.registry).

    compare: a model that passes the gate and scores at least as well as the current champion
    on this run's test rows, less ``promotion_tolerance`` on the search metric; verdict: any
    model that passes the gate; never: none (every version is a challenger).
    """

    promotion: Literal["compare", "verdict", "never"] = "compare"
    promotion_tolerance: float = Field(0.0, ge=0.0, le=1e6)


class PipelineConfig(_Strict):
    """The whole pipeline, as validated once at the edge and passed around typed."""

    experiment: str = Field("paramaudit", min_length=1, max_length=500)  # MLflow's own limit
    seed: int = Field(0, ge=0, le=2**32 - 1, description="numpy and scikit-learn take 0..2**32-1")
    smoke: bool = False
    # auto: regression for a numeric target with non-integer values, or integers with more than
    # 20 distinct values that are also more than 5% of the rows (or more than 100 distinct);
    # classification otherwise (text, booleans, few integers). data.checks.resolve_task.
    task: Literal["auto", "classification", "regression"] = "auto"
    model: Any = "mlp"
    data: DataConfig = Field(default_factory=DataConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    overfit: OverfitConfig = Field(default_factory=OverfitConfig)  # `audit:` is read as this
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    ray: RayConfig = Field(default_factory=RayConfig)

    @model_validator(mode="before")
    @classmethod
    def _bounded_input(cls, values: Any, info: ValidationInfo) -> Any:
        # Prefect's flow parameters come here without build_config, which measured already
        if isinstance(values, Mapping) and not (info.context or {}).get("measured"):
            check_config_size(values)
        if isinstance(values, Mapping) and "audit" in values:
            # the section's name before 2026-12: a config written then still reads
            if "overfit" in values:
                raise ValueError("audit and overfit are the same section (audit is its old "
                                 "name): keep one")
            values = {("overfit" if k == "audit" else k): v for k, v in values.items()}
        return values

    @model_validator(mode="after")
    def _resolve_auto_scaler(self) -> PipelineConfig:
        # `auto` becomes a scaler here, once, so every part of the run (trials, folds, the final
        # model, the logged params) sees the same concrete kind: minmax for images (bounded
        # intensities, where standardising blows up the near-constant border pixels), standard
        # for tables
        images = self.data.dataset in IMAGE_DATASETS or self.data.image_shape is not None
        kind = "minmax" if images else "standard"
        scaler = self.preprocess.scaler
        if scaler == "auto":
            self.preprocess.scaler = kind
        elif isinstance(scaler, dict) and "auto" in scaler["choice"]:
            choices = list(dict.fromkeys(kind if c == "auto" else c for c in scaler["choice"]))
            self.preprocess.scaler = {"choice": choices} if len(choices) > 1 else choices[0]
        return self

    @model_validator(mode="after")
    def _devices_agree(self) -> PipelineConfig:
        gpu = self.search.resources_per_trial.gpu
        if self.train.device == "cuda" and gpu == 0:
            raise ValueError("train.device is cuda, but search.resources_per_trial.gpu is 0: "
                             "Ray would give the trials no GPU; set a gpu share or device: auto")
        if self.train.device == "cpu" and gpu:
            raise ValueError(f"search.resources_per_trial.gpu is {gpu:g}, but train.device is "
                             "cpu: the trials would hold GPUs they never use")
        return self

    @model_validator(mode="after")
    def _bounded_grid(self) -> PipelineConfig:
        if self.search.algorithm != "grid":
            return self
        # what search.planned_trials will compute: trials x the size of every searched choice
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

    @model_validator(mode="after")
    def _task_fits(self) -> PipelineConfig:
        dataset = self.data.dataset
        known = self.task if self.task != "auto" else (
            None if dataset is None else
            "regression" if dataset in REGRESSION_DATASETS else "classification")
        if dataset is not None and self.task != "auto" and self.task != (
                "regression" if dataset in REGRESSION_DATASETS else "classification"):
            other = "classification" if self.task == "regression" else "regression"
            raise ValueError(f"task: the built-in data set {dataset!r} is {other}, not "
                             f"{self.task}; set task: auto or {other}, or pick another data set")
        metric = self.search.metric
        if known == "regression" and metric in CLASSIFICATION_METRICS:
            raise ValueError(
                f"search.metric: {metric} is a classification metric, but the task is regression"
                f"{' (data set ' + repr(dataset) + ')' if self.task == 'auto' else ''}; use "
                "val_loss, val_rmse, val_mae or val_r2")
        if known == "classification" and metric in REGRESSION_METRICS:
            raise ValueError(
                f"search.metric: {metric} is a regression metric, but the task is classification"
                f"{' (data set ' + repr(dataset) + ')' if self.task == 'auto' else ''}; use "
                "val_loss, val_accuracy, val_balanced_accuracy, val_f1_macro, val_roc_auc or "
                "val_log_loss")
        return self

    @field_validator("model")
    @classmethod
    def _known_model(cls, name: Any) -> Any:
        # imported here: the registry imports torch, which importing the config does not
        from paramaudit.models import MODELS, is_reference, register_reference

        known = one_of(tuple(sorted(n for n in MODELS if not is_reference(n))))

        def check(value: Any) -> Any:
            # a user's builder is imported and registered here, once, so that the space below
            # is checked against what it declares; its name becomes the absolute reference
            return register_reference(value) if is_reference(value) else known(value)

        return choice_or_value(name, check, "model")

    @model_validator(mode="after")
    def _space_fits_models(self) -> PipelineConfig:
        # the space was checked against every registered model; a name two models declare
        # differently is checked here against the models this run builds, and a name none of
        # them reads leaves the space (the default space's MLP widths, for a user's model): it
        # would only multiply trials that train the same network
        from paramaudit.config.space import declarations_by_name

        models = self.model_choices()
        checked = check_space(self.search.space, models)
        read = declarations_by_name(models)
        kept = {name: value for name, value in checked.items() if name in read}
        if not kept:
            raise ValueError(f"search.space: no model of this run ({', '.join(models)}) reads "
                             f"any of {', '.join(list(checked)[:8])}")
        if kept != self.search.space:
            self.search.space = kept
        return self

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
