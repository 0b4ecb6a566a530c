"""A user's own builder (package.module:build or file.py:build): declared by its signature,
checked by the config, built once before the search, sent to Ray's workers by value."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from paramaudit.config import build_config
from paramaudit.errors import ConfigError
from paramaudit.models import MODELS, build_model, model_declarations, portable_models
from paramaudit.models.user import FILE_PACKAGE
from paramaudit.search.trainable import check_models

RESMLP = '''
import math
from typing import Literal
import torch
from torch import nn


class ResMLP(nn.Module):
    def __init__(self, input_shape, n_outputs, width: int = 16, depth: int = 2,
                 norm: Literal["layer", "none"] = "layer", dropout: float = 0.1,
                 bias: bool = True) -> None:
        super().__init__()
        self.inp = nn.Linear(math.prod(input_shape), width, bias=bias)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.norm = nn.LayerNorm(width) if norm == "layer" else nn.Identity()
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x):
        h = self.inp(x.flatten(1))
        for block in self.blocks:
            h = h + torch.relu(block(self.norm(h)))
        return self.head(h)


def build(input_shape, n_outputs, width: int = 16, depth: int = 2,
          norm: Literal["layer", "none"] = "layer", dropout: float = 0.1, bias: bool = True):
    return ResMLP(input_shape, n_outputs, width, depth, norm, dropout, bias)


def raises(input_shape, n_outputs, width: int = 8):
    raise RuntimeError("no " + "x" * 5000)


def not_a_module(input_shape, n_outputs):
    return 42


def no_default(input_shape, n_outputs, width: int):
    return nn.Linear(1, 1)


def one_arg(input_shape):
    return nn.Linear(1, 1)
'''


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder outside the repository holding the user's resmlp.py, the current directory."""
    (tmp_path / "resmlp.py").write_text(RESMLP)
    monkeypatch.chdir(tmp_path)
    before = set(MODELS)
    yield tmp_path
    for name in set(MODELS) - before:
        MODELS.pop(name)
    for mod in [m for m in sys.modules if m.startswith(FILE_PACKAGE) or m == "models.net"]:
        sys.modules.pop(mod)


def config(model: str, space: dict | None = None, **top: object):
    return build_config({"model": model, **({"search": {"space": space}} if space else {}), **top})


def test_the_signature_declares_the_hyperparameters(user_dir: Path) -> None:
    cfg = config("resmlp.py:build")
    assert cfg.model == f"{user_dir / 'resmlp.py'}:build"  # absolute: workers elsewhere find it
    declared = {h.name: h for h in model_declarations()[cfg.model]}
    assert declared["width"].type is int and declared["width"].default == 16
    assert declared["norm"].choices == ("layer", "none")
    assert declared["bias"].type is bool and declared["dropout"].type is float


def test_a_class_is_a_builder_too(user_dir: Path) -> None:
    cfg = config("resmlp.py:ResMLP", {"width": {"choice": [4, 8]}})
    model = build_model(cfg.model, (5,), 3, width=8, learning_rate=0.1)  # training's: not passed
    assert type(model).__name__ == "ResMLP" and model.inp.out_features == 8


def test_the_space_is_checked_against_the_users_model(user_dir: Path) -> None:
    for space, expected in [
        ({"widht": 8}, "unknown hyperparameter 'widht' (did you mean 'width'?)"),
        ({"norm": "batch"}, "norm: unknown value 'batch'"),
        ({"width": 2.5}, "width: must be an integer"),
        ({"width": {"uniform": [4, 8]}}, "uniform gives fractions"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(expected)):
            config("resmlp.py:build", space)


def test_names_no_model_of_the_run_reads_leave_the_space(user_dir: Path) -> None:
    # the default space's MLP widths would only multiply trials of one network
    cfg = config("resmlp.py:build")
    assert "hidden_size" not in cfg.search.space and "num_layers" not in cfg.search.space
    assert "dropout" in cfg.search.space and "learning_rate" in cfg.search.space


def test_a_users_dropout_may_differ_from_the_mlps(user_dir: Path) -> None:
    # its own default (0.1) and the MLP's (0.0) stand side by side; each run checks its own
    cfg = config({"choice": ["mlp", "resmlp.py:build"]}, {"dropout": 0.3})
    assert cfg.search.space["dropout"] == 0.3


@pytest.mark.parametrize("ref, expected", [
    ("resmlp.py:nope", "has no attribute 'nope'"),
    ("missing.py:build", "no file"),
    ("no_such_package.mod:build", "cannot import 'no_such_package.mod'"),
    ("resmlp.py:no_default", "hyperparameter 'width' has no default"),
    ("resmlp.py:one_arg", "must take (input_shape, n_outputs, **hyperparameters)"),
    ("mpl", "did you mean 'mlp'"),
])
def test_a_bad_reference_is_one_line(user_dir: Path, ref: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        config(ref)
    assert expected in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("attr, expected", [
    ("raises", "raised RuntimeError: no xxx"),
    ("not_a_module", "returned builtins.int, not a torch.nn.Module"),
])
def test_a_builder_that_fails_is_caught_before_the_search(user_dir: Path, attr: str,
                                                          expected: str) -> None:
    cfg = config(f"resmlp.py:{attr}")
    with pytest.raises(ConfigError) as info:
        check_models(cfg.model_choices(), cfg.search.space, (4,), 2, "classification")
    msg = str(info.value)
    assert expected in msg and f"resmlp.py:{attr}" in msg
    assert "\n" not in msg and len(msg) < 800  # the builder's huge message is cut


def test_a_user_package_called_models_is_the_users(user_dir: Path) -> None:
    (user_dir / "models").mkdir()
    (user_dir / "models" / "__init__.py").write_text("")
    (user_dir / "models" / "net.py").write_text(
        "from torch import nn\n\ndef build(input_shape, n_outputs, width: int = 3):\n"
        "    return nn.Sequential(nn.Linear(input_shape[0], width), nn.Linear(width, n_outputs))\n")
    cfg = config("models.net:build", {"width": 5})
    assert cfg.model == "models.net:build"
    assert build_model(cfg.model, (4,), 2, width=5)[0].out_features == 5
    import paramaudit.models

    assert paramaudit.models.build_model is build_model  # paramaudit's registry is untouched


def test_the_builder_reaches_a_worker_that_cannot_import_it(user_dir: Path, tmp_path_factory) -> None:
    import ray.cloudpickle

    cfg = config("resmlp.py:build")
    blob = ray.cloudpickle.dumps(portable_models(cfg.model_choices()))
    elsewhere = tmp_path_factory.mktemp("worker")
    (elsewhere / "models.pkl").write_bytes(blob)
    (user_dir / "resmlp.py").unlink()  # as on another machine: no such file
    code = textwrap.dedent(f"""
        import pickle
        from paramaudit.models import adopt_models, build_model
        models = pickle.load(open("models.pkl", "rb"))
        adopt_models(models)
        model = build_model({cfg.model!r}, (6,), 2, width=7)
        print(sum(p.numel() for p in model.parameters()))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    expected = sum(p.numel() for p in build_model(cfg.model, (6,), 2, width=7).parameters())
    assert int(out.stdout.split()[-1]) == expected


def test_portable_models_while_sys_modules_changes(user_dir: Path) -> None:
    """The CLI imports the flow's modules on a thread while the search starts, and a garbage
    collection can run other code in the middle of any allocation: the scan of sys.modules for
    the user's modules must not iterate the live dict while it changes. Here every collection
    (one per allocation) runs a finaliser that adds a module, as an import would."""
    import gc
    import sys
    import types

    import ray.cloudpickle  # noqa: F401  (imported up front: its import is not what is tested)

    cfg = config("resmlp.py:build")
    added: list[str] = []
    running = [True]

    class Importer:  # in a reference cycle: only the collector frees it, and its finaliser
        def __del__(self) -> None:  # "imports" a module and leaves the next one behind
            if running:
                added.append(name := f"_pa_gc_{len(added)}")
                sys.modules[name] = types.ModuleType(name)
                nxt = Importer()
                nxt.cycle = nxt

    threshold = gc.get_threshold()
    first = Importer()
    first.cycle = first
    del first
    gc.set_threshold(1)
    try:
        assert cfg.model in portable_models(cfg.model_choices())
        changed = len(added)
    finally:
        running.clear()  # the chain ends at the next collection
        gc.set_threshold(*threshold)
        gc.collect()
        for name in added:
            sys.modules.pop(name, None)
    assert changed > 0  # modules were added while it ran
