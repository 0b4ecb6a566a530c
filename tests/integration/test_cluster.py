"""The pipeline on an existing two-node Ray cluster (both nodes on 127.0.0.2 of this machine)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli_env, paramaudit_cmd

from paramaudit.search import ray_environment, ray_home

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("shared_prefect")]
RAY = str(Path(sys.executable).with_name("ray"))
# the cluster's nodes on a loopback address of their own: never the interfaces the machine has,
# and apart from the 127.0.0.1 a local Ray of the pipeline would take
LOOPBACK_NODE_IP = "127.0.0.2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK_NODE_IP, 0))
        return s.getsockname()[1]


def _pids_using(marker: str) -> list[int]:
    """Processes whose command line mentions ``marker`` (this cluster's own temp folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture
def cluster(tmp_path: Path):
    """A head node and a worker node, one CPU each, stopped by PID whatever happens."""
    temp = Path("/tmp") / f"pa-ray-{os.getpid()}"  # Ray's socket paths must stay short
    temp.mkdir(exist_ok=True)
    env = dict(os.environ, **ray_environment(), HOME=str(ray_home()))
    port = _free_port()
    mem = ["--object-store-memory", str(100 * 1024**2), "--memory", str(1024**3)]
    try:
        subprocess.run([RAY, "start", "--head", f"--node-ip-address={LOOPBACK_NODE_IP}",
                        f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                        f"--temp-dir={temp}", "--disable-usage-stats", *mem],
                       env=env, check=True, capture_output=True, timeout=120)
        subprocess.run([RAY, "start", f"--address={LOOPBACK_NODE_IP}:{port}",
                        f"--node-ip-address={LOOPBACK_NODE_IP}", "--num-cpus=1",
                        f"--dashboard-agent-listen-port={_free_port()}", *mem],
                       env=env, check=True, capture_output=True, timeout=120)
        yield {"address": f"{LOOPBACK_NODE_IP}:{port}", "temp": temp}
    finally:
        pids = _pids_using(str(temp))
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists()
                                                       for p in pids):
                time.sleep(0.2)
        subprocess.run(["rm", "-rf", str(temp)], check=False)


USER_NET = """
import math

from torch import nn


class Net(nn.Module):  # a user's model: no worker can import it, it must travel by value
    def __init__(self, input_shape, n_outputs, width: int = 16):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.ReLU(),
                                  nn.Linear(width, n_outputs))

    def forward(self, x):
        return self.body(x)
"""


def test_the_pipeline_spreads_trials_over_both_nodes(cluster: dict, tmp_path: Path) -> None:
    env = cli_env(tmp_path, RAY_ADDRESS=cluster["address"])
    (tmp_path / "user_net.py").write_text(USER_NET)
    (tmp_path / "cfg.yaml").write_text(
        "model: {choice: [mlp, user_net.py:Net]}\n"
        "data: {dataset: digits}\n"
        "search: {algorithm: grid, trials: 1, scheduler: none, max_concurrent: 2, space: "
        "{learning_rate: {choice: [0.001, 0.01]}, hidden_size: 32, num_layers: 1, width: 24}}\n"
        "train: {max_epochs: 6, patience: 6}\n")
    proc = subprocess.run(paramaudit_cmd() + ["run", "--config", "cfg.yaml", "--output-json",
                                              "out.json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"ray: {cluster['address']}" in proc.stdout + proc.stderr
    out = json.loads((tmp_path / "out.json").read_text())
    trials = out["trial_results"]
    nodes = {t["node_id"] for t in trials}
    assert len(trials) == 4
    assert len(nodes) == 2, nodes
    # the user's model trained on the cluster's workers: 64 -> 24 -> 10 is 1,810 parameters
    user = [t for t in trials if t["hyperparameters"]["model"].endswith("user_net.py:Net")]
    assert len(user) == 2 and all(t["status"] == "TERMINATED" for t in trials), trials
    assert {t["params_trainable"] for t in user} == {64 * 24 + 24 + 24 * 10 + 10}
    # the pipeline connected to the cluster and left it running: both nodes still up
    assert len(_pids_using(str(cluster["temp"]))) >= 4
