"""train.device and search.resources_per_trial: validated, refused early, passed to Ray Tune.

Every test here runs on the CPU. The ones that need a CUDA GPU run only where one is visible and
say they were skipped otherwise (pytest -rs lists the reason).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from paramaudit.app import cli
from paramaudit.config import build_config
from paramaudit.errors import ConfigError
from paramaudit.models import build_model
from paramaudit.search.space import ray_cpus, trial_resources
from paramaudit.search.trainable import check_devices
from paramaudit.training import EpochTrainer, fit, resolve_device

GPU = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not GPU, reason="no CUDA GPU visible: the GPU path is not run here")
needs_no_gpu = pytest.mark.skipif(GPU, reason="a CUDA GPU is visible: the no-GPU refusal cannot "
                                              "be seen here")


def cfg(**sections: dict) -> object:
    return build_config({"data": {"dataset": "iris"}, **sections})


def test_the_defaults_are_auto_one_cpu_and_a_gpu_share_left_to_the_cluster() -> None:
    c = cfg()
    assert c.train.device == "auto"
    assert c.search.resources_per_trial.cpu == 1 and c.search.resources_per_trial.gpu is None


@pytest.mark.parametrize("raw, expected", [
    ({"train": {"device": "cuda"}, "search": {"resources_per_trial": {"gpu": 0}}},
     "train.device is cuda, but search.resources_per_trial.gpu is 0"),
    ({"train": {"device": "cpu"}, "search": {"resources_per_trial": {"gpu": 0.5}}},
     "gpu is 0.5, but train.device is cpu"),
    ({"search": {"resources_per_trial": {"gpu": 1.5}}}, "a fraction of one GPU or whole GPUs"),
    ({"search": {"resources_per_trial": {"cpu": 0}}}, "greater than 0"),
    ({"search": {"resources_per_trial": {"tpu": 1}}}, "tpu"),
    ({"train": {"device": "gpu"}}, "'auto', 'cpu' or 'cuda'"),
])
def test_a_device_setting_that_cannot_work_is_refused_at_validation(raw: dict,
                                                                     expected: str) -> None:
    with pytest.raises((ConfigError, ValueError)) as err:
        cfg(**raw)
    assert expected in str(err.value)


def test_a_local_ray_gets_the_cpus_the_concurrent_trials_reserve() -> None:
    assert ray_cpus(cfg(search={"trials": 8, "max_concurrent": 2})) == 2
    assert ray_cpus(cfg(search={"trials": 8, "max_concurrent": 2,
                                "resources_per_trial": {"cpu": 1.5}})) == 3
    assert ray_cpus(cfg(search={"trials": 1, "resources_per_trial": {"cpu": 0.5}})) == 1


def test_trials_share_the_clusters_gpus_unless_told_otherwise() -> None:
    two_at_once = {"trials": 8, "max_concurrent": 2}
    assert trial_resources(cfg(search=two_at_once), 0) == {"cpu": 1.0}
    assert trial_resources(cfg(search=two_at_once), 1) == {"cpu": 1.0, "gpu": 0.5}
    assert trial_resources(cfg(search=two_at_once), 4) == {"cpu": 1.0, "gpu": 1.0}
    assert trial_resources(cfg(search=two_at_once, train={"device": "cpu"}), 1) == {"cpu": 1.0}
    fixed = {**two_at_once, "resources_per_trial": {"cpu": 2, "gpu": 0.25}}
    assert trial_resources(cfg(search=fixed), 1) == {"cpu": 2.0, "gpu": 0.25}
    with pytest.raises(ConfigError, match="gpu is 2, but the Ray cluster has 1 GPUs"):
        trial_resources(cfg(search={**two_at_once, "resources_per_trial": {"gpu": 2}}), 1)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if GPU else "cpu")
    with pytest.raises(ValueError, match="must be one of auto, cpu, cuda"):
        resolve_device("tpu")


@needs_no_gpu
def test_cuda_where_none_is_visible_is_one_line_before_ray_starts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no CUDA GPU is visible"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="^train.device is cuda, but no CUDA GPU is visible"):
        check_devices(cfg(train={"device": "cuda"}))
    with pytest.raises(ConfigError, match="^search.resources_per_trial.gpu is 0.5, but no CUDA"):
        check_devices(cfg(search={"resources_per_trial": {"gpu": 0.5}}))
    check_devices(cfg())  # auto asks for nothing
    (tmp_path / "cfg.yaml").write_text("data: {dataset: iris}\ntrain: {device: cuda}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "MLFLOW_"))}
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
               PREFECT_HOME=str(tmp_path / "prefect"), MLFLOW_DISABLE_TELEMETRY="true")
    out = subprocess.run([sys.executable, "-m", "paramaudit.app.cli", "run", "--config",
                          "cfg.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines() == [
        "paramaudit: error: train.device is cuda, but no CUDA GPU is visible to this process "
        "(torch.cuda.is_available() is false); use train.device auto or cpu"]
    assert "ray:" not in out.stdout and "Traceback" not in out.stderr


def test_preflight_refuses_cuda_before_anything_starts(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    (tmp_path / "cfg.yaml").write_text("data: {dataset: iris}\ntrain: {device: cuda}\n")
    args = cli._parser().parse_args(["run", "--config", "cfg.yaml"])
    if GPU:
        assert cli.preflight(args).train.device == "cuda"
    else:
        with pytest.raises(ConfigError, match="no CUDA GPU is visible"):
            cli.preflight(args)


def _rows(n: int = 120) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    return (x[:90], y[:90]), (x[90:], y[90:])


HP = {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 16, "hidden_size": 16,
      "num_layers": 1, "class_weight": "balanced"}


def test_a_trainer_given_the_cpu_trains_as_the_default_does() -> None:
    train, val = _rows()
    histories = []
    for device in (None, "cpu"):
        torch.manual_seed(0)
        model = build_model("mlp", (4,), 2, **HP)
        kwargs = {} if device is None else {"device": device}
        histories.append(fit(model, train, val, HP, max_epochs=3, seed=0, **kwargs).val_loss)
    assert histories[0] == histories[1]


@needs_gpu
def test_a_trainer_on_the_gpu_trains_there_and_hands_back_a_cpu_model() -> None:
    train, val = _rows()
    torch.manual_seed(0)
    model = build_model("mlp", (4,), 2, **HP)
    trainer = EpochTrainer(model, train, val, HP, seed=0, device="cuda")
    assert next(trainer.model.parameters()).device.type == "cuda"
    assert trainer.x_tr.device.type == "cuda"
    metrics = trainer.step()
    assert np.isfinite(metrics["val_loss"])
    trainer.finish()
    assert next(model.parameters()).device.type == "cpu"


@needs_gpu
def test_image_augmentation_and_regression_run_on_the_gpu() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((64, 64), dtype=np.float32)
    y = rng.integers(0, 3, 64)
    model = build_model("cnn", (1, 8, 8), 3, channels=4, conv_layers=1)
    fit(model, (x[:48], y[:48]), (x[48:], y[48:]), {"learning_rate": 0.01}, max_epochs=1,
        augment_shape=(1, 8, 8), device="cuda")
    reg = build_model("mlp", (64,), 1, hidden_size=8, num_layers=1)
    h = fit(reg, (x[:48], x[:48, 0] * 3), (x[48:], x[48:, 0] * 3), {"learning_rate": 0.01},
            max_epochs=2, task="regression", device="cuda")
    assert len(h.val_loss) == 2 and all(np.isfinite(h.val_loss))


def test_memory_measured_on_the_cpu_sees_what_training_allocated() -> None:
    from paramaudit.memory import measured_peak

    with measured_peak("cpu") as memory:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        block.sum()
    del block
    assert memory["device"] == "cpu"
    assert memory["peak_bytes"] is not None and memory["peak_bytes"] >= 48 * 2**20
    assert "peak resident memory" in memory["measure"]


def test_the_audit_sets_the_measurement_beside_the_estimate() -> None:
    from paramaudit import audit as audit_lib
    from paramaudit import report
    from paramaudit.audit_log import audit_metrics

    rep = audit_lib.audit_model(build_model("mlp", (4,), 2, **HP), optimizer="adam")
    assert "Training memory measured" not in report.render(rep, "markdown")
    rep.measured_training_memory = {"device": "cpu", "peak_bytes": 3 * 2**20,
                                    "measure": "peak resident memory of the process"}
    text = report.render(rep, "markdown")
    assert "Training memory (adam)" in text and "Training memory measured" in text
    assert "3.0 MiB on cpu" in text or "3.00 MiB on cpu" in text, text
    assert audit_metrics(rep)["training_memory_measured_bytes"] == 3 * 2**20
    assert rep.to_dict()["measured_training_memory"]["peak_bytes"] == 3 * 2**20
