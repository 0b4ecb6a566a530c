"""The command-line contract: exit codes, one-line errors, and the audit command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_env, paramaudit_cmd

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("shared_prefect")]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(paramaudit_cmd() + args, cwd=cwd, env=cli_env(cwd),
                          capture_output=True, text=True, timeout=300)


BAD_RUNS = {
    "missing config": (["--config", "nope.yaml"], "nope.yaml"),
    "yaml does not parse": (["--config", "bad.yaml"], "line"),
    "unknown key": (["--config", "typo.yaml"], "did you mean 'search'"),
    "unknown data set": (["--dataset", "mnist"], "mnist"),
    "missing data file": (["--data", "missing.csv", "--target", "y"], "missing.csv"),
    "zero trials": (["--trials", "0"], "search.trials"),
    "negative epochs": (["--max-epochs", "-1"], "train.max_epochs"),
    "unknown search": (["--search", "genetic"], "genetic"),
    "target without data": (["--target", "y"], "--target"),
    "unknown target column": (["--data", "ok.csv", "--target", "lable"], "did you mean 'label'"),
    "non-integer trials": (["--trials", "many"], "--trials"),
}


@pytest.mark.parametrize("case", sorted(BAD_RUNS))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case: str, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("search:\n  trials: [1\n")
    (tmp_path / "typo.yaml").write_text("serach:\n  trials: 3\n")
    (tmp_path / "ok.csv").write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n"
                                                              for i in range(40)))
    args, needle = BAD_RUNS[case]
    proc = _run(["run", *args, "--output-json", "out.json"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "out.json").exists()
    assert not (tmp_path / "mlflow.db").exists()


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = _run(["run", "--config", "nope.yaml", "--debug"], tmp_path)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr


def test_unreachable_tracking_server_fails_fast(tmp_path: Path) -> None:
    proc = subprocess.run(
        paramaudit_cmd() + ["run", "--smoke"], cwd=tmp_path, capture_output=True, text=True,
        env=cli_env(tmp_path, MLFLOW_TRACKING_URI="http://127.0.0.1:9"), timeout=120)
    assert proc.returncode == 2
    assert "http://127.0.0.1:9" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "[2/6] search" not in proc.stdout


def test_audit_registry_model_as_json(tmp_path: Path) -> None:
    proc = _run(["audit", "models:mlp", "--format", "json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    # mlp defaults on digits: 64 -> 128 -> 128 -> 10
    assert data["total_params"] == 64 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10
    assert sum(layer["params"] for layer in data["layers"]) == data["total_params"]


def test_a_user_package_called_models_is_theirs_and_paramaudit_still_works(
        tmp_path: Path) -> None:
    """paramaudit's own models install as paramaudit.models: a user's `models` keeps its name."""
    pkg = tmp_path / "models"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "import torch.nn as nn\n"
        "OWNER = 'user'\n"
        "def tiny():\n"
        "    return nn.Linear(4, 2)\n")
    code = ("import models, paramaudit.models, paramaudit.search, paramaudit.flows.pipeline\n"
            "print(models.OWNER, sorted(paramaudit.models.MODELS))\n")
    env = cli_env(tmp_path, PYTHONPATH=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["user", "['cnn',", "'mlp']"]
    # models:NAME: the user's callable when NAME is theirs, the built-in when it is registered
    user = _run(["audit", "models:tiny", "--format", "json"], tmp_path)
    assert user.returncode == 0, user.stderr
    assert json.loads(user.stdout)["total_params"] == 4 * 2 + 2
    builtin = _run(["audit", "models:mlp", "--format", "json"], tmp_path)
    assert builtin.returncode == 0, builtin.stderr
    assert json.loads(builtin.stdout)["total_params"] > 10_000


def test_audit_user_module_on_meta_device_as_table(tmp_path: Path) -> None:
    (tmp_path / "big.py").write_text(
        "import torch.nn as nn\n"
        "def build():\n"
        "    return nn.Sequential(*[nn.Linear(8192, 8192) for _ in range(40)])\n")
    proc = _run(["audit", "big:build", "--meta", "--depth", "1"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    total = 40 * (8192 * 8192 + 8192)
    assert f"{total:,}" in proc.stdout
    assert "Total" in proc.stdout


@pytest.mark.parametrize("spec,needle", [
    ("nomodule:build", "nomodule"),
    ("no_colon", "module.path:callable"),
    ("models:resnet9000", "resnet9000"),
])
def test_audit_bad_spec_exits_2(spec: str, needle: str, tmp_path: Path) -> None:
    proc = _run(["audit", spec], tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
