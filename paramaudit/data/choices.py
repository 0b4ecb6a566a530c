"""Preprocessing and model choices checked against the data before any trial starts: each
choice a search may try (``{choice: [...]}``) must work on it (:func:`check_preprocessing`)."""

from __future__ import annotations

from typing import Any

from paramaudit.config import PipelineConfig, PreprocessConfig, declared_hyperparameters
from paramaudit.data.preprocess import fit_encoding, missing_columns, split_indices
from paramaudit.data.read import Dataset, data_label
from paramaudit.errors import ConfigError


def _choices(value: Any) -> list[Any]:
    """Every value a searched field (``{choice: [...]}``) can take; a fixed one alone."""
    return list(value["choice"]) if isinstance(value, dict) else [value]


def _check_preprocess_choices(pre: PreprocessConfig, ds: Dataset, n_features: int,
                              n_train: int | None = None, encoded: int = 0,
                              indicators: int = 0) -> None:
    """Every choice of preprocess.* must work on this data (each is tried by some trial)."""
    parts = ([f"{encoded} of them from encoding categorical columns"] if encoded else []) + (
        [f"{indicators} missing-value indicators"] if indicators else [])
    after = f" ({', '.join(parts)})" if parts else ""
    for k in _choices(pre.pca_components):
        if isinstance(k, int) and not isinstance(k, bool):
            if k > n_features:
                raise ConfigError(
                    f"config: preprocess.pca_components: {k} components, but {data_label(ds)} has "
                    f"{n_features} feature columns{after}; ask for at most {n_features} or a "
                    "variance fraction such as 0.95"
                )
            if n_train is not None and k > n_train:
                raise ConfigError(
                    f"config: preprocess.pca_components: {k} components, but the train split of "
                    f"{data_label(ds)} has {n_train} rows; ask for at most {n_train}"
                )
    if any(_choices(pre.augment)) and ds.image_shape is None:
        raise ConfigError(
            f"config: preprocess.augment: augmentation needs image data, but {data_label(ds)} is "
            "tabular; declare data.image_shape: [channels, height, width] or set augment: false"
        )
    if any(_choices(pre.augment)) and any(k is not None for k in _choices(pre.pca_components)):
        raise ConfigError(
            "config: preprocess.augment: augmentation shifts and rotates images, and PCA turns "
            "them into components first; search one or the other"
        )


def _kernel_sizes(space: dict[str, Any]) -> list[int]:
    """Every kernel size the search can try (a randint's largest is its upper bound - 1)."""
    value = space.get("kernel_size", declared_hyperparameters()["kernel_size"].default)
    if isinstance(value, dict):
        kind, args = next(iter(value.items()))
        return [args[1] - 1] if kind == "randint" else [int(v) for v in args]
    return [int(value)]


def _check_cnn(cfg: PipelineConfig, ds: Dataset) -> None:
    """A CNN needs image data, unflattened by PCA, with kernels that fit the image."""
    if ds.image_shape is None:
        raise ConfigError(
            f"config: model: cnn needs image data, but {data_label(ds)} is tabular; use mlp "
            "or declare data.image_shape: [channels, height, width]"
        )
    if any(k is not None for k in _choices(cfg.preprocess.pca_components)):
        raise ConfigError(
            "config: preprocess.pca_components: PCA flattens the image, but model cnn needs "
            "(channels, height, width) inputs; drop PCA or use mlp"
        )
    side = min(ds.image_shape[1:])
    big = [k for k in _kernel_sizes(cfg.search.space) if k > side]
    if big:
        raise ConfigError(
            f"config: search.space.kernel_size: {max(big)} is larger than the "
            f"{ds.image_shape[1]}x{ds.image_shape[2]} images of {data_label(ds)}; "
            f"use kernels of at most {side}"
        )


def check_preprocessing(cfg: PipelineConfig, ds: Dataset) -> None:
    """Preprocessing and model choices that cannot work on this data: a one-line ConfigError.

    pca_components above the number of features (after encoding and missing indicators) or
    train rows, augmentation or a CNN on non-image data, PCA before a CNN, a CNN kernel larger
    than the image.
    """
    idx_train, _, _ = split_indices(ds, cfg.data, cfg.seed)
    enc = fit_encoding(ds, idx_train, cfg.data)
    encoded = enc.n_out if enc else 0
    indicators = len(missing_columns(ds, idx_train)["indicator_columns"])
    n_features = ds.x.shape[1] + encoded + indicators
    _check_preprocess_choices(cfg.preprocess, ds, n_features, len(idx_train), encoded, indicators)
    if "cnn" in cfg.model_choices():
        _check_cnn(cfg, ds)
