"""Unit tests of Ray's set-up for a search that need no running Ray."""

from __future__ import annotations

from paramaudit.search.ray_runtime import WORKER_PRELOAD, ray_environment, ray_home


def test_ray_start_environment_blocks_the_metadata_probe() -> None:
    env = ray_environment()
    assert env["RAY_USAGE_STATS_ENABLED"] == "0"
    home = ray_home()
    assert (home / "ray_bootstrap_config.yaml").is_file()


def test_every_module_the_workers_preload_imports() -> None:
    import importlib.util

    # a name that no longer imports would make every pre-started worker fail its preload
    assert [m for m in WORKER_PRELOAD if importlib.util.find_spec(m) is None] == []
    assert WORKER_PRELOAD[0] == "paramaudit.worker_start"
    assert WORKER_PRELOAD[-1] == "paramaudit.worker_ready"
    assert "paramaudit.search.trainable" in WORKER_PRELOAD  # the module Tune's trials run from
