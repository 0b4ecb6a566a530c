"""The environment every paramaudit process sets before Prefect, MLflow or Ray import.

Each of the three phones home unless told not to (MLflow's telemetry, Prefect's server analytics,
Ray's usage stats), and Prefect's server would listen on every interface by default. These are
defaults: a value the user set wins.
"""

from __future__ import annotations

import os

QUIET_DEFAULTS: dict[str, str] = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_API_HOST": "127.0.0.1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    # a progress bar per downloaded model (the predictor and its shipped code): noise in a log
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def quiet_environment() -> None:
    """Telemetry off and servers on loopback, unless the user said otherwise."""
    for key, value in QUIET_DEFAULTS.items():
        os.environ.setdefault(key, value)
