"""A small CNN for image data sets such as digits (8x8, one channel)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from paramaudit.models import read_hyperparameters, register_model
from paramaudit.models.common import ACTIVATIONS
from paramaudit.models.declarations import ACTIVATION, CHANNELS, CONV_LAYERS, DROPOUT, KERNEL_SIZE
from paramaudit.models.declarations import CNN_HYPERPARAMETERS as HYPERPARAMETERS


@dataclass(frozen=True)
class CNNConfig:
    """Architecture hyperparameters of the CNN."""

    input_shape: tuple[int, int, int]  # channels, height, width
    n_classes: int
    channels: int = CHANNELS.default
    kernel_size: int = KERNEL_SIZE.default
    conv_layers: int = CONV_LAYERS.default
    dropout: float = DROPOUT.default
    activation: str = ACTIVATION.default

    def __post_init__(self) -> None:
        assert len(self.input_shape) == 3, "the CNN needs (channels, height, width) inputs"
        assert self.kernel_size % 2 == 1, "an odd kernel keeps the spatial size with padding"
        assert self.kernel_size <= min(self.input_shape[1:]), "kernel larger than the image"
        assert self.conv_layers >= 1 and self.channels >= 1 and self.n_classes >= 1  # 1: regression
        assert self.activation in ACTIVATIONS


class CNN(nn.Module):
    """Same-padded conv blocks, global average pooling, then a linear head."""

    def __init__(self, cfg: CNNConfig) -> None:
        super().__init__()
        self.cfg = cfg
        blocks: list[nn.Module] = []
        width = cfg.input_shape[0]
        for _ in range(cfg.conv_layers):
            blocks += [
                nn.Conv2d(width, cfg.channels, cfg.kernel_size, padding=cfg.kernel_size // 2),
                nn.BatchNorm2d(cfg.channels),
                ACTIVATIONS[cfg.activation](),
            ]
            width = cfg.channels
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(width, cfg.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.view(-1, *self.cfg.input_shape)
        return self.head(self.dropout(self.pool(self.features(x)).flatten(1)))


@register_model("cnn", HYPERPARAMETERS)
def build_cnn(input_shape: tuple[int, ...], n_classes: int, **hp: Any) -> CNN:
    """A CNN over image inputs; flat inputs must carry their image shape."""
    if len(input_shape) == 2:
        input_shape = (1, *input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"model cnn needs image data, got input shape {input_shape}")
    shape = (int(input_shape[0]), int(input_shape[1]), int(input_shape[2]))
    return CNN(CNNConfig(shape, n_classes, **read_hyperparameters(HYPERPARAMETERS, hp)))
