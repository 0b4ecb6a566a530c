"""MLflow: the tracking URI and its credentials, the reachability checks, the run's client."""

from paramaudit.tracking.reachable import check_artifact_location, check_reachable
from paramaudit.tracking.tracker import PARENT_TAG, Tracker, scratch_dir
from paramaudit.tracking.uris import (
    DEFAULT_ARTIFACTS,
    DEFAULT_URI,
    is_local_store,
    redact,
    redact_text,
    resolve_tracking_uri,
    without_userinfo,
)
from paramaudit.tracking.write_behind import WriteBehind

__all__ = ["DEFAULT_ARTIFACTS", "DEFAULT_URI", "PARENT_TAG", "Tracker", "WriteBehind",
           "check_artifact_location", "check_reachable", "is_local_store", "redact",
           "redact_text", "resolve_tracking_uri", "scratch_dir", "without_userinfo"]
