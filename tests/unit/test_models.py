"""The model registry and the two built-in models (MLP, CNN)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from paramaudit.models import MODELS, build_model, register_model
from paramaudit.models.cnn import CNN, CNNConfig
from paramaudit.models.common import ACTIVATIONS
from paramaudit.models.declarations import ACTIVATION_NAMES, BUILTIN_MODELS
from paramaudit.models.mlp import MLP, MLPConfig


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def hand_count(d: int, c: int, layers: int, h: int) -> int:
    """Weights + biases of d -> h (x layers) -> c, written out by hand."""
    if layers == 0:
        return d * c + c
    return (d * h + h) + (layers - 1) * (h * h + h) + (h * c + c)


# --------------------------------------------------------------------------- registry


def test_registry_has_builtin_models() -> None:
    assert {"mlp", "cnn"} <= set(MODELS)


def test_checking_a_config_imports_no_torch() -> None:
    # a bad config is reported in well under a second: the built-ins' declarations are plain data
    code = ("import sys\n"
            "from paramaudit.config import build_config\n"
            "from paramaudit.errors import ConfigError\n"
            "for raw in ({'serach': {}}, {'model': 'mpl'}, {'search': {'space': {'hiden_size': 3}}},\n"
            "            {'model': 'cnn', 'search': {'space': {'kernel_size': 3}}}):\n"
            "    try:\n"
            "        build_config(raw)\n"
            "    except ConfigError:\n"
            "        pass\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_a_builtin_is_its_module_builder_once_built() -> None:
    for name, (module, builder, declared) in BUILTIN_MODELS.items():
        build_model(name, (1, 8, 8), 3)
        assert MODELS[name] is getattr(sys.modules[module], builder)
        assert sys.modules[module].HYPERPARAMETERS == declared


def test_every_declared_activation_has_its_module() -> None:
    assert tuple(ACTIVATIONS) == ACTIVATION_NAMES


def test_unknown_model_raises_key_error() -> None:
    with pytest.raises(KeyError) as info:
        build_model("transformer", (4,), 2)
    assert "transformer" in str(info.value) and "mlp" in str(info.value)


def test_register_model_adds_a_builder() -> None:
    @register_model("_test_linear")
    def build(input_shape: tuple[int, ...], n_classes: int, **hp: object) -> nn.Module:
        return nn.Linear(input_shape[0], n_classes)

    try:
        m = build_model("_test_linear", (5,), 3)
        assert isinstance(m, nn.Linear) and m.out_features == 3
    finally:
        MODELS.pop("_test_linear", None)


def test_builders_ignore_unknown_hyperparameters() -> None:
    m = build_model("mlp", (4,), 2, learning_rate=0.1, optimizer="adam", channels=3)
    assert isinstance(m, MLP)
    c = build_model("cnn", (1, 8, 8), 10, num_layers=5, hidden_size=3, batch_size=7)
    assert isinstance(c, CNN)


# --------------------------------------------------------------------------- MLP


@pytest.mark.parametrize(
    ("d", "c", "layers", "h"),
    [(64, 10, 2, 128), (4, 3, 1, 16), (30, 2, 3, 7), (13, 3, 0, 99), (1, 2, 5, 1)],
)
def test_mlp_param_count(d: int, c: int, layers: int, h: int) -> None:
    cfg = MLPConfig(input_dim=d, n_classes=c, num_layers=layers, hidden_size=h)
    model = build_model("mlp", (d,), c, num_layers=layers, hidden_size=h)
    assert n_params(model) == cfg.num_params() == hand_count(d, c, layers, h)


def test_mlp_param_count_known_value() -> None:
    # 64 -> 128 -> 128 -> 10: 8320 + 16512 + 1290
    assert MLPConfig(64, 10).num_params() == 26122
    assert n_params(build_model("mlp", (64,), 10)) == 26122


def test_mlp_flattens_image_input() -> None:
    m = build_model("mlp", (1, 8, 8), 10, num_layers=1, hidden_size=8)
    assert m.cfg.input_dim == 64
    assert m(torch.zeros(5, 1, 8, 8)).shape == (5, 10)
    assert m(torch.zeros(5, 64)).shape == (5, 10)


def test_mlp_zero_layers_is_linear() -> None:
    m = build_model("mlp", (6,), 3, num_layers=0, hidden_size=50, dropout=0.3)
    linears = [mod for mod in m.modules() if isinstance(mod, nn.Linear)]
    assert len(linears) == 1
    assert (linears[0].in_features, linears[0].out_features) == (6, 3)
    assert len(m.body) == 0
    assert not any(isinstance(mod, tuple(ACTIVATIONS.values())) for mod in m.modules())
    # it is affine: f(a + b) - f(b) == f(a) - f(0)
    a, b, z = torch.randn(1, 6), torch.randn(1, 6), torch.zeros(1, 6)
    m.eval()
    torch.testing.assert_close(m(a + b) - m(b), m(a) - m(z))


@pytest.mark.parametrize(("dropout", "expected"), [(0.0, 0), (0.25, 3)])
def test_mlp_dropout_only_when_positive(dropout: float, expected: int) -> None:
    m = build_model("mlp", (4,), 2, num_layers=3, hidden_size=8, dropout=dropout)
    drops = [mod for mod in m.modules() if isinstance(mod, nn.Dropout)]
    assert len(drops) == expected
    assert all(d.p == dropout for d in drops)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_mlp_activation(name: str) -> None:
    m = build_model("mlp", (4,), 2, num_layers=2, hidden_size=8, activation=name)
    acts = [mod for mod in m.modules() if isinstance(mod, ACTIVATIONS[name])]
    assert len(acts) == 2
    assert m(torch.randn(3, 4)).shape == (3, 2)


@pytest.mark.parametrize(
    "kw",
    [
        {"input_dim": 0, "n_classes": 2},
        {"input_dim": 4, "n_classes": 0},  # 1 output is a regression's
        {"input_dim": 4, "n_classes": 2, "num_layers": -1},
        {"input_dim": 4, "n_classes": 2, "hidden_size": 0},
        {"input_dim": 4, "n_classes": 2, "dropout": 1.0},
        {"input_dim": 4, "n_classes": 2, "activation": "swish"},
    ],
)
def test_mlp_config_invariants(kw: dict[str, object]) -> None:
    with pytest.raises(AssertionError):
        MLPConfig(**kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- CNN


def test_cnn_forward_shape_image_and_flat() -> None:
    torch.manual_seed(0)
    m = build_model("cnn", (1, 8, 8), 10)
    m.eval()
    x = torch.randn(7, 1, 8, 8)
    out = m(x)
    assert out.shape == (7, 10)
    flat = m(x.reshape(7, 64))
    assert flat.shape == (7, 10)
    torch.testing.assert_close(flat, out)


def test_cnn_two_dim_input_shape_gets_a_channel() -> None:
    m = build_model("cnn", (8, 8), 10)
    assert m.cfg.input_shape == (1, 8, 8)
    assert m(torch.randn(2, 64)).shape == (2, 10)


def test_cnn_needs_image_shape() -> None:
    with pytest.raises(ValueError) as info:
        build_model("cnn", (64,), 10)
    assert "cnn" in str(info.value)


def test_cnn_structure_follows_hyperparameters() -> None:
    m = build_model("cnn", (1, 8, 8), 10, channels=5, kernel_size=5, conv_layers=3, dropout=0.2,
                    activation="gelu")
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    assert len(convs) == 3
    assert all(c.out_channels == 5 and c.kernel_size == (5, 5) and c.padding == (2, 2) for c in convs)
    assert convs[0].in_channels == 1 and convs[1].in_channels == 5
    assert m.head.in_features == 5 and m.head.out_features == 10
    assert m.dropout.p == pytest.approx(0.2)
    assert sum(isinstance(mod, nn.GELU) for mod in m.modules()) == 3
    # same padding keeps the 8x8 map through every block
    assert m.features(torch.zeros(2, 1, 8, 8)).shape == (2, 5, 8, 8)


def test_cnn_param_count_by_hand() -> None:
    c, k, layers, n_cls = 4, 3, 2, 10
    m = build_model("cnn", (1, 8, 8), n_cls, channels=c, kernel_size=k, conv_layers=layers)
    conv1 = 1 * c * k * k + c
    conv2 = c * c * k * k + c
    bn = 2 * c  # weight + bias per BatchNorm
    head = c * n_cls + n_cls
    assert n_params(m) == conv1 + conv2 + 2 * bn + head


@pytest.mark.parametrize(
    "kw",
    [
        {"kernel_size": 2},
        {"kernel_size": 4},
        {"kernel_size": 9},  # larger than the 8x8 image
        {"conv_layers": 0},
        {"channels": 0},
        {"activation": "swish"},
    ],
)
def test_cnn_invariants(kw: dict[str, object]) -> None:
    with pytest.raises(AssertionError):
        build_model("cnn", (1, 8, 8), 10, **kw)


def test_cnn_config_needs_outputs_and_three_dims() -> None:
    CNNConfig(input_shape=(1, 8, 8), n_classes=1)  # a regression's one output
    with pytest.raises(AssertionError):
        CNNConfig(input_shape=(1, 8, 8), n_classes=0)
    with pytest.raises(AssertionError):
        CNNConfig(input_shape=(8, 8), n_classes=2)  # type: ignore[arg-type]
