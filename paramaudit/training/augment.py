"""Image augmentation of training batches: small random shifts, rotations and noise."""

from __future__ import annotations

import math

import torch
from torch import nn


def augment_images(x: torch.Tensor, image_shape: tuple[int, ...], gen: torch.Generator,
                   noise: float = 0.1, max_shift: int = 1, max_degrees: float = 10.0) -> torch.Tensor:
    """Small random shifts, rotations and noise on a batch of flat or image rows (training only)."""
    n = x.shape[0]
    img = x.reshape(n, *image_shape)
    # drawn on the CPU generator (the same draws on every device), applied where the batch is
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(max_degrees)
    h, w = image_shape[-2], image_shape[-1]
    shift = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=gen).float()
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([
        torch.stack([cos, -sin, shift[:, 0] * 2 / w], dim=1),
        torch.stack([sin, cos, shift[:, 1] * 2 / h], dim=1),
    ], dim=1)
    grid = nn.functional.affine_grid(theta.to(x.device), list(img.shape), align_corners=False)
    out = nn.functional.grid_sample(img, grid, padding_mode="border", align_corners=False)
    out = out + noise * torch.randn(out.shape, generator=gen).to(x.device)
    return out.reshape(x.shape)
