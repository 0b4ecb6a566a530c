"""Which torch device ``train.device`` names."""

from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(setting: str) -> torch.device:
    """``train.device`` as a torch device: auto takes a GPU when one is visible, cuda insists."""
    if setting not in DEVICES:
        raise ValueError(f"train.device must be one of {', '.join(DEVICES)}, not {setting!r}")
    if setting == "cpu" or (setting == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("train.device is cuda, but no CUDA GPU is visible to this process "
                         "(torch.cuda.is_available() is false); use auto or cpu")
    return torch.device("cuda")
