"""What the built-in models share: activations by name, and the hyperparameters both read."""

from __future__ import annotations

from torch import nn

from paramaudit.models.hyperparameters import Hyperparameter

# the one list of activation names: the config's check of `activation` reads it from ACTIVATION
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
}

ACTIVATION = Hyperparameter("activation", str, "relu", choices=tuple(ACTIVATIONS),
                            help="the nonlinearity after each hidden layer")
DROPOUT = Hyperparameter("dropout", float, 0.0, ge=0, lt=1, help="dropout probability")
