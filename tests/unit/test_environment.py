"""The telemetry switches are written once in paramaudit.environment; the Makefile and the work
pool in prefect.yaml, which start processes that are not paramaudit's, must say the same."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from paramaudit.environment import LOOPBACK, QUIET_DEFAULTS, TELEMETRY_OFF

ROOT = Path(__file__).resolve().parents[2]


def test_the_makefile_exports_the_same_telemetry_switches() -> None:
    exported = dict(re.findall(r"^export (\w+) \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M))
    assert exported == TELEMETRY_OFF


def test_the_work_pool_sets_the_same_telemetry_switches() -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    pool = spec["definitions"]["work_pools"]["paramaudit"]
    assert pool["job_variables"]["env"] == TELEMETRY_OFF


def test_the_quiet_defaults_hold_the_switches_and_loopback() -> None:
    assert TELEMETRY_OFF.items() <= QUIET_DEFAULTS.items()
    assert QUIET_DEFAULTS["PREFECT_SERVER_API_HOST"] == LOOPBACK == "127.0.0.1"
