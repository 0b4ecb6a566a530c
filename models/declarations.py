"""The built-in models' hyperparameters, declared apart from their torch code.

Plain data, so that checking a config (the CLI's preflight, its did-you-mean hints) knows every
built-in model and what it reads without importing torch, which takes longer than the rest of
the check; :mod:`paramaudit.models` registers each built-in with these and imports its module on
the first build.
"""

from __future__ import annotations

from paramaudit.models.hyperparameters import Hyperparameter

# the activations' names; paramaudit.models.common maps each to its torch module
ACTIVATION_NAMES = ("relu", "gelu", "tanh", "leaky_relu", "silu", "elu")

ACTIVATION = Hyperparameter("activation", str, "relu", choices=ACTIVATION_NAMES,
                            help="the nonlinearity after each hidden layer")
DROPOUT = Hyperparameter("dropout", float, 0.0, ge=0, lt=1, help="dropout probability")

NUM_LAYERS = Hyperparameter("num_layers", int, 2, ge=0, le=64, help="hidden layers (0: a linear model)")
HIDDEN_SIZE = Hyperparameter("hidden_size", int, 128, ge=1, le=65_536, help="units per hidden layer")
MLP_HYPERPARAMETERS = (NUM_LAYERS, HIDDEN_SIZE, DROPOUT, ACTIVATION)

CHANNELS = Hyperparameter("channels", int, 16, ge=1, le=65_536, help="feature maps per conv block")
# odd: the blocks pad by kernel_size // 2 to keep the image size, which needs an odd kernel
KERNEL_SIZE = Hyperparameter("kernel_size", int, 3, ge=1, le=31, odd=True, help="conv kernel side")
CONV_LAYERS = Hyperparameter("conv_layers", int, 2, ge=1, le=64, help="conv blocks")
CNN_HYPERPARAMETERS = (CHANNELS, KERNEL_SIZE, CONV_LAYERS, DROPOUT, ACTIVATION)

# name -> (module, builder, hyperparameters): what paramaudit.models registers at import
BUILTIN_MODELS: dict[str, tuple[str, str, tuple[Hyperparameter, ...]]] = {
    "mlp": ("paramaudit.models.mlp", "build_mlp", MLP_HYPERPARAMETERS),
    "cnn": ("paramaudit.models.cnn", "build_cnn", CNN_HYPERPARAMETERS),
}
