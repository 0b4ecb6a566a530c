"""What the built-in models share: activations by name, and the hyperparameters both read."""

from __future__ import annotations

from torch import nn

from paramaudit.models.declarations import ACTIVATION, DROPOUT

__all__ = ["ACTIVATION", "ACTIVATIONS", "DROPOUT"]

# each declared activation name's module (a test checks the names match ACTIVATION_NAMES)
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
}

