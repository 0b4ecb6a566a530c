"""Tracking URIs: which store, whether it is local, and the same URI with its password hidden.

A password can reach a message from the URI itself or from an exception's text that quotes it
(an MLflow error, a trial's traceback): ``redact_text`` hides both, and every password this
process was given (URI, MLFLOW_TRACKING_PASSWORD, ~/.mlflow/credentials) wherever it appears.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from paramaudit.config import TrackingConfig

DEFAULT_URI = "sqlite:///mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"


def resolve_tracking_uri(cfg: TrackingConfig) -> str:
    """Config first, then MLFLOW_TRACKING_URI, then a sqlite store in the working directory."""
    return cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def is_local_store(uri: str) -> bool:
    """True for stores that live on this machine's disk (sqlite, plain files)."""
    scheme = urlsplit(uri).scheme
    return scheme in ("sqlite", "file", "") or re.match(r"^[A-Za-z]:", uri) is not None


def redact(uri: str) -> str:
    """The URI with any password replaced, safe for logs and MLflow params."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rpartition("@")[2]  # keeps IPv6 brackets and the port as written
    netloc = f"{parts.username}:***@{host}" if parts.username else f"***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def without_userinfo(uri: str) -> str:
    """The URI with no user or password: what to connect to, or to show as a link."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


# scheme://user:password@ as urlsplit reads it: the user ends at the first ":", the password at
# the last "@" before the authority ends (so an unencoded "@" or ":" in it is covered too)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s/?#@:]*):[^\s/?#]*@")
# shorter values would turn ordinary words and numbers in a message into ***
_MIN_SECRET = 4
_SECRETS: set[str] = set()  # passwords this process has used (check_reachable, Tracker)


def _forms(value: str | None) -> set[str]:
    """A secret as written, percent-decoded and percent-encoded (each long enough to replace)."""
    forms = {value, unquote(value)} if value else set()
    return {f for v in forms for f in (v, quote(v, safe="")) if len(f) >= _MIN_SECRET}


def remember_secret(value: str | None) -> None:
    """Keep a password this process connects with, for :func:`redact_text`."""
    _SECRETS.update(_forms(value))


def _known_secrets() -> set[str]:
    """Passwords and tokens never to print: those used here and those in the environment."""
    try:
        uri_password = urlsplit(os.environ.get("MLFLOW_TRACKING_URI") or "").password
    except ValueError:  # malformed: its userinfo is still caught by the pattern
        uri_password = None
    found = set(_SECRETS)
    for value in (uri_password, os.environ.get("MLFLOW_TRACKING_PASSWORD"),
                  os.environ.get("MLFLOW_TRACKING_TOKEN")):
        found |= _forms(value)
    return found


def redact_text(text: str) -> str:
    """Any message with its secrets replaced by ***, safe to print, log or tag.

    Every ``scheme://user:password@host`` becomes ``scheme://user:***@host``; then the password
    of MLFLOW_TRACKING_URI, MLFLOW_TRACKING_PASSWORD, MLFLOW_TRACKING_TOKEN and every password
    this process has connected with are replaced wherever they appear, as written and
    percent-encoded (values under four characters only inside URIs).
    """
    out = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user'] + ':' if m['user'] else ''}***@",
                        text)
    for secret in sorted(_known_secrets(), key=len, reverse=True):
        out = out.replace(secret, "***")
    return out


def artifact_location(cfg: TrackingConfig, uri: str) -> str | None:
    """Where a new experiment's artifacts go: the config's, ./mlartifacts for a local store, else
    the server's choice (None)."""
    if cfg.artifact_location:
        loc = cfg.artifact_location
        return Path(loc).resolve().as_uri() if "://" not in loc else loc
    if is_local_store(uri):
        return Path(DEFAULT_ARTIFACTS).resolve().as_uri()
    return None  # a tracking server decides (proxied artifacts)
