"""The config's data sections: where the rows come from (``data:``) and how the features are
prepared before training (``preprocess:``), with the names of the built-in data sets and metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from paramaudit.config.validators import boolean, choice_or_value, one_of, pca

BUILTIN_DATASETS = ("digits", "iris", "wine", "breast_cancer", "diabetes")
IMAGE_DATASETS = ("digits",)  # built-in sets whose features are images (data.read.IMAGE_SHAPES)
REGRESSION_DATASETS = ("diabetes",)  # the others are classification
# the search metrics only one task reports (paramaudit.metrics.TASK_METRICS says the same; a
# unit test keeps the two equal: the config does not import numpy)
CLASSIFICATION_METRICS = ("val_accuracy", "val_balanced_accuracy", "val_f1_macro", "val_roc_auc",
                          "val_log_loss")
REGRESSION_METRICS = ("val_rmse", "val_mae", "val_r2")
SCALERS = ("auto", "standard", "minmax", "robust", "none")


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
    categorical: Literal["auto", "onehot", "frequency", "error"] = Field(
        "auto", description="how text and boolean columns are encoded: auto one-hot encodes up "
        "to 30 categories and frequency-encodes more; error refuses them")
    min_category_count: int = Field(
        5, ge=1, le=10**9, description="categories rarer than this in the train split are pooled")
    columns: dict[str, Literal["numeric", "categorical", "identifier", "drop", "datetime"]] = Field(
        default_factory=dict, description="a column's kind, instead of the inferred one")
    drop: list[str] = Field(default_factory=list, description="columns of the file to leave out")
    image_shape: list[int] | None = Field(
        None, description="declare CSV features as images: [channels, height, width]")

    @field_validator("drop", mode="before")
    @classmethod
    def _one_column(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v  # `drop: id` names one column

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
        return None if name is None else one_of(BUILTIN_DATASETS)(name)

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
        if self.dataset is not None and (self.columns or self.drop):
            raise ValueError(
                f"columns and drop name columns of a data file (path); the built-in data set "
                f"{self.dataset!r} has none to name: drop them or give path"
            )
        return self


class PreprocessConfig(_Strict):
    """How features are prepared before training; each choice can be searched like a hyperparameter."""

    scaler: Any = "auto"  # minmax for images, standard for tables (data.preprocess.resolve_scaler)
    pca_components: Any = None
    augment: Any = False
    impute: Any = "median"  # missing numeric values: median, mean, most_frequent or constant (0)

    @field_validator("scaler")
    @classmethod
    def _scaler(cls, v: Any) -> Any:
        return choice_or_value(v, one_of(SCALERS), "scaler")

    @field_validator("impute")
    @classmethod
    def _impute(cls, v: Any) -> Any:
        return choice_or_value(v, one_of(("median", "mean", "most_frequent", "constant")), "impute")

    @field_validator("pca_components")
    @classmethod
    def _pca_components(cls, v: Any) -> Any:
        return choice_or_value(v, pca, "pca_components")

    @field_validator("augment")
    @classmethod
    def _augment(cls, v: Any) -> Any:
        return choice_or_value(v, boolean, "augment")

    def searched(self) -> dict[str, list[Any]]:
        """The preprocessing choices the search varies, by name."""
        return {k: v["choice"] for k in ("scaler", "pca_components", "augment", "impute")
                if isinstance(v := getattr(self, k), dict)}

    def fixed(self) -> dict[str, Any]:
        """The preprocessing choices that are fixed."""
        return {k: v for k in ("scaler", "pca_components", "augment", "impute")
                if not isinstance(v := getattr(self, k), dict)}
