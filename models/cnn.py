"""A small CNN for image data sets such as digits (8x8, one channel)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from paramaudit.models import register_model
from paramaudit.models.mlp import ACTIVATIONS


@dataclass(frozen=True)
class CNNConfig:
    """Architecture hyperparameters of the CNN."""

    input_shape: tuple[int, int, int]  # channels, height, width
    n_classes: int
    channels: int = 16
    kernel_size: int = 3
    conv_layers: int = 2
    dropout: float = 0.0
    activation: str = "relu"

    def __post_init__(self) -> None:
        assert len(self.input_shape) == 3, "the CNN needs (channels, height, width) inputs"
        assert self.kernel_size % 2 == 1, "an odd kernel keeps the spatial size with padding"
        assert self.kernel_size <= min(self.input_shape[1:]), "kernel larger than the image"
        assert self.conv_layers >= 1 and self.channels >= 1 and self.n_classes >= 2
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


@register_model("cnn")
def build_cnn(input_shape: tuple[int, ...], n_classes: int, **hp: Any) -> CNN:
    """A CNN over image inputs; flat inputs must carry their image shape."""
    if len(input_shape) == 2:
        input_shape = (1, *input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"model cnn needs image data, got input shape {input_shape}")
    cfg = CNNConfig(
        input_shape=(int(input_shape[0]), int(input_shape[1]), int(input_shape[2])),
        n_classes=n_classes,
        channels=int(hp.get("channels", 16)),
        kernel_size=int(hp.get("kernel_size", 3)),
        conv_layers=int(hp.get("conv_layers", 2)),
        dropout=float(hp.get("dropout", 0.0)),
        activation=str(hp.get("activation", "relu")),
    )
    return CNN(cfg)
