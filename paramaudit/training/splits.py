"""What the loaded splits say about the model: its task, its output units, its image shape."""

from __future__ import annotations

from typing import Any


def task_of(splits: Any) -> str:
    """The splits' task: "classification" unless they say "regression"."""
    return getattr(splits, "task", "classification")


def n_outputs(splits: Any) -> int:
    """The model's output units: one per class, 1 for a regression."""
    return 1 if task_of(splits) == "regression" else int(splits.n_classes)


def image_shape(splits: Any) -> tuple[int, ...] | None:
    """The (channels, height, width) of image data, or None for tabular data."""
    shape = tuple(getattr(splits, "input_shape", ()))
    return shape if len(shape) == 3 else None
