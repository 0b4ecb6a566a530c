"""Hyperparameters are declared next to the code that reads them; the config reads the declarations.

A model registered here, unknown to paramaudit.config, gets its hyperparameters validated,
defaulted, resolved and hinted like the built-in ones.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from paramaudit.audit import OPTIMIZER_STATES
from paramaudit.config import build_config, declared_hyperparameters, resolve_hyperparameters
from paramaudit.errors import ConfigError
from paramaudit.models import (
    MODELS,
    Hyperparameter,
    build_model,
    cnn,
    mlp,
    model_declarations,
    register_model,
)
from paramaudit.models.common import ACTIVATIONS
from paramaudit.train_hyperparameters import OPTIMIZERS, TRAINING_HYPERPARAMETERS
from paramaudit.training import make_optimizer

WIDTH = Hyperparameter("width_mult", float, 1.0, gt=0, le=4, help="scales every layer's width")
NORM = Hyperparameter("norm", str, "batch", choices=("batch", "layer", "none"))
# read only with layer norm: a model's own hyperparameter can depend on another's value
EPS = Hyperparameter("norm_eps", float, 1e-5, gt=0, only_when=("norm", ("layer",)))
BLOCKS = Hyperparameter("blocks", int, 3, ge=3, le=9, odd=True)


def config_error(space: dict[str, Any], **top: Any) -> str:
    with pytest.raises(ConfigError) as info:
        build_config({"search": {"space": space}, **top})
    msg = str(info.value)
    assert "\n" not in msg
    return msg


@pytest.fixture
def wide() -> Iterator[str]:
    """A third model, registered the way a user's would be, removed again afterwards."""

    @register_model("_test_wide", [WIDTH, NORM, EPS, BLOCKS, mlp.DROPOUT])
    def build(input_shape: tuple[int, ...], n_classes: int, **hp: Any) -> nn.Module:
        return nn.Linear(input_shape[0], max(1, round(n_classes * WIDTH.read(hp))))

    yield "_test_wide"
    MODELS.pop("_test_wide", None)


# --------------------------------------------------------------------------- a model config does not know


def test_a_registered_models_hyperparameters_are_validated(wide: str) -> None:
    cfg = build_config({"model": wide, "search": {"space": {"width_mult": {"uniform": [0.5, 2.0]},
                                                            "norm": {"choice": ["batch", "layer"]},
                                                            "blocks": 5, "learning_rate": 0.01}}})
    assert cfg.search.space["width_mult"] == {"uniform": [0.5, 2.0]}
    assert cfg.search.sampled() == ["width_mult", "norm"]
    assert build_model(wide, (4,), 3, width_mult=2.0).out_features == 6


@pytest.mark.parametrize(("space", "fragment"), [
    ({"width_mult": 0}, "width_mult: must be a number in (0, 4], got 0"),
    ({"width_mult": {"uniform": [1, 5]}}, "width_mult: must be a number in (0, 4], got 5"),
    ({"norm": "group"}, "norm: unknown value 'group'; expected one of batch, layer, none"),
    ({"norm": "layr"}, "did you mean 'layer'"),
    ({"norm": {"uniform": ["batch", "layer"]}}, "norm: uniform samples numbers"),
    ({"blocks": 4}, "blocks: must be an odd integer >= 3 (3, 5, 7, ...), got 4"),
    ({"blocks": 11}, "blocks: must be at most 9"),
    ({"blocks": {"randint": [3, 9]}}, "blocks: randint would give even values"),
    ({"norm_eps": -1.0}, "norm_eps: must be a positive number"),
    ({"width_mul": 1.0}, "unknown hyperparameter 'width_mul' (did you mean 'width_mult'?)"),
])
def test_its_bounds_and_choices_give_the_usual_messages(wide: str, space: dict[str, Any],
                                                        fragment: str) -> None:
    msg = config_error(space)
    assert msg.startswith("config: search.space: ") and fragment in msg, msg


def test_its_hyperparameters_are_resolved_with_their_defaults(wide: str) -> None:
    hp = resolve_hyperparameters({"width_mult": 2.0, "hidden_size": 64}, wide)
    assert hp["width_mult"] == 2.0 and hp["norm"] == "batch" and hp["blocks"] == 3
    assert "norm_eps" not in hp and "hidden_size" not in hp  # not read: batch norm, not an MLP
    assert resolve_hyperparameters({"norm": "layer"}, wide)["norm_eps"] == 1e-5
    assert "width_mult" not in resolve_hyperparameters({"width_mult": 2.0}, "mlp")


def test_a_misplaced_key_hints_at_its_hyperparameter(wide: str) -> None:
    msg = str(pytest.raises(ConfigError, build_config, {"search": {"width_mult": 2.0}}).value)
    assert "did you mean 'search.space.width_mult'" in msg


def test_an_unregistered_models_hyperparameters_are_unknown_again() -> None:
    assert "width_mult" not in declared_hyperparameters()
    assert "unknown hyperparameter 'width_mult'" in config_error({"width_mult": 1.0})


def test_a_model_without_declarations_reads_only_trainings() -> None:
    register_model("_test_bare")(lambda shape, n, **hp: nn.Linear(shape[0], n))
    try:
        # only_when on "task": read for classification (the default task), not for regression
        assert set(resolve_hyperparameters({"dropout": 0.3}, "_test_bare")) == {
            h.name for h in TRAINING_HYPERPARAMETERS
            if h.only_when is None or h.only_when == ("task", ("classification",))}
    finally:
        MODELS.pop("_test_bare", None)


# --------------------------------------------------------------------------- one name, one meaning


def test_two_models_may_declare_a_name_differently_and_each_run_checks_its_own(wide: str) -> None:
    register_model("_test_other", [Hyperparameter("norm", str, "layer", choices=("layer", "rms"))])(
        lambda shape, n, **hp: nn.Linear(shape[0], n))
    try:
        assert build_config({"model": "_test_other", "search": {"space": {"norm": "rms"}}})
        assert "norm" in config_error({"norm": "rms"}, model=wide)  # _test_wide has no rms
        # a run that may build either: the value must fit both
        assert "norm" in config_error({"norm": "rms"}, model={"choice": [wide, "_test_other"]})
    finally:
        MODELS.pop("_test_other", None)


def test_a_model_redeclaring_a_training_hyperparameter_differently_is_refused() -> None:
    register_model("_test_lr", [Hyperparameter("learning_rate", float, 0.1, gt=0)])(nn.Linear)
    try:
        with pytest.raises(ValueError, match="'learning_rate' unlike training"):
            declared_hyperparameters()
    finally:
        MODELS.pop("_test_lr", None)


@pytest.mark.parametrize("kw", [
    {"name": "x", "type": int, "default": 1, "choices": (1, 2)},
    {"name": "x", "type": str, "default": "a", "choices": ("a",), "ge": 0},
    {"name": "x", "type": int, "default": 1, "gt": 0, "ge": 1},
    {"name": "x", "type": float, "default": 1.0, "odd": True},
    {"name": "x", "type": list, "default": []},
    {"name": "not a name", "type": int, "default": 1},
])
def test_a_malformed_declaration_fails_where_it_is_written(kw: dict[str, Any]) -> None:
    with pytest.raises((TypeError, ValueError)):
        Hyperparameter(**kw)


def test_a_model_declaring_a_name_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        register_model("_test_twice", [WIDTH, WIDTH])


# --------------------------------------------------------------------------- the built-in declarations


def test_every_declared_default_passes_its_own_check() -> None:
    space = {name: h.default for name, h in declared_hyperparameters().items()}
    both = {"choice": ["mlp", "cnn"]}
    assert build_config({"model": both, "search": {"space": space}}).search.space == space


def test_the_built_in_models_read_their_declared_defaults() -> None:
    assert model_declarations()["mlp"] == mlp.HYPERPARAMETERS
    assert model_declarations()["cnn"] == cnn.HYPERPARAMETERS
    m = build_model("mlp", (4,), 2)
    assert (m.cfg.num_layers, m.cfg.hidden_size) == (mlp.NUM_LAYERS.default, mlp.HIDDEN_SIZE.default)
    c = build_model("cnn", (1, 8, 8), 10)
    assert (c.cfg.channels, c.cfg.kernel_size) == (cnn.CHANNELS.default, cnn.KERNEL_SIZE.default)


def test_optimizer_names_come_from_the_training_code() -> None:
    assert declared_hyperparameters()["optimizer"].choices == OPTIMIZERS
    params = [nn.Parameter(torch.zeros(1))]
    assert all(isinstance(make_optimizer(params, {"optimizer": n}), torch.optim.Optimizer)
               for n in OPTIMIZERS)
    # the training-memory estimate knows the state every one of them keeps
    assert set(OPTIMIZERS) <= set(OPTIMIZER_STATES)
    assert "did you mean 'rmsprop'" in config_error({"optimizer": "rmsprp"})


def test_activation_names_come_from_the_models() -> None:
    assert declared_hyperparameters()["activation"].choices == tuple(ACTIVATIONS)
    for name in ACTIVATIONS:
        assert build_config({"search": {"space": {"activation": name}}})


def test_importing_the_config_loads_no_torch() -> None:
    # the CLI's checks and Ray's workers import it: the registry is read only when validating
    code = "import sys, paramaudit.config; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
