"""The environment every paramaudit process sets before Prefect, MLflow or Ray import.

Each of the three phones home unless told not to (MLflow's telemetry, Prefect's server analytics,
Ray's usage stats), and Prefect's server would listen on every interface by default. These are
defaults: a value the user set wins.
"""

from __future__ import annotations

import os

LOOPBACK = "127.0.0.1"  # what every server paramaudit starts binds to (Prefect's, a local Ray's)
# the telemetry switches, which the Makefile and prefect.yaml's work pool repeat for processes
# that do not start as paramaudit (tests/unit/test_environment.py checks they agree)
TELEMETRY_OFF: dict[str, str] = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
}
QUIET_DEFAULTS: dict[str, str] = {
    **TELEMETRY_OFF,
    "PREFECT_SERVER_API_HOST": LOOPBACK,
    "RAY_AUTH_MODE": "disabled",
    # a progress bar per downloaded model (the predictor and its shipped code): noise in a log
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def free_port() -> int:
    """A TCP port on LOOPBACK that nothing listens on right now (for a server to start on)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def quiet_environment() -> None:
    """Telemetry off and servers on loopback, unless the user said otherwise."""
    for key, value in QUIET_DEFAULTS.items():
        os.environ.setdefault(key, value)
