"""Before a run starts: is the tracking store there, do its credentials work, can artifacts be
written? One line naming the URI (password hidden) when not.

The credentials go as HTTP basic auth, as MLflow's own client sends them: from the URI's user
info, else MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, else ~/.mlflow/credentials, else
MLFLOW_TRACKING_TOKEN as a bearer token.
"""

from __future__ import annotations

import base64
import configparser
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from paramaudit.config import TrackingConfig
from paramaudit.errors import TrackingError
from paramaudit.tracking.uris import (
    artifact_location,
    redact,
    redact_text,
    remember_secret,
    resolve_tracking_uri,
    without_userinfo,
)


def _file_credentials() -> tuple[str | None, str | None]:
    """~/.mlflow/credentials, which MLflow's client reads too (mlflow.utils.credentials)."""
    path = Path(os.path.expanduser("~/.mlflow/credentials"))
    if not path.is_file():
        return None, None
    config = configparser.ConfigParser()
    try:
        config.read(path)
    except (configparser.Error, OSError, UnicodeDecodeError):
        return None, None
    if "mlflow" not in config:
        return None, None
    section = config["mlflow"]
    return section.get("mlflow_tracking_username"), section.get("mlflow_tracking_password")


def _basic(user: str, password: str, encoding: str) -> str:
    try:
        raw = f"{user}:{password}".encode(encoding)
    except UnicodeEncodeError:
        raw = f"{user}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _authorization(uri: str) -> str | None:
    """The Authorization header MLflow's REST client would send for this URI.

    MLflow (mlflow.utils.rest_utils.http_request) sets basic auth when both
    MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or ~/.mlflow/credentials) are set,
    else a bearer MLFLOW_TRACKING_TOKEN; requests then replaces it with the URI's own
    user:password (percent-decoded, latin-1), so the URI wins.
    """
    parts = urlsplit(uri)
    if parts.username is not None and parts.password is not None:
        user, password = unquote(parts.username), unquote(parts.password)
        if user or password:
            remember_secret(parts.password)
            return _basic(user, password, "latin-1")
    file_user, file_password = _file_credentials()
    user = os.environ.get("MLFLOW_TRACKING_USERNAME") or file_user
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD") or file_password
    if user and password:
        remember_secret(password)
        return _basic(user, password, "utf-8")
    if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        remember_secret(token)
        return f"Bearer {token}"
    return None


class _SameHostAuthRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but send the credentials only to the host they were given for.

    urllib copies every header to any redirect target; requests (MLflow's client) drops
    Authorization when the host changes, and so does this.
    """

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urlsplit(newurl).hostname != urlsplit(req.full_url).hostname:
            new.remove_header("Authorization")
        return new


def _http_status(url: str, auth: str | None, timeout: float) -> int:
    """The HTTP status of a GET (an HTTP error status is an answer, not an exception)."""
    req = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
    opener = urllib.request.build_opener(_SameHostAuthRedirects)
    try:
        with opener.open(req, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        err.close()
        return int(err.code)


def _check_http(uri: str, timeout: float) -> None:
    # urllib would resolve "user:password@host" as a host name (a DNS query carrying the
    # password, and a failed check against a server that is up): connect to the host
    # alone and send the user info as an Authorization header, as MLflow's client does
    base = without_userinfo(uri).rstrip("/")
    auth = _authorization(uri)
    shown = redact(uri)
    try:
        status = _http_status(base + "/health", auth, timeout)
        if status < 400:
            # MLflow's basic-auth app leaves /health open: only an API call tests the credentials
            status = _http_status(base + "/api/2.0/mlflow/experiments/search?max_results=1",
                                  auth, timeout)
            if status not in (401, 403):
                return
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        reason = redact_text(str(getattr(err, "reason", err)))
        raise TrackingError(f"MLflow tracking server {shown} unreachable: {reason}") from None
    if status in (401, 403):
        if os.environ.get("MLFLOW_TRACKING_AUTH") or os.environ.get("MLFLOW_TRACKING_AWS_SIGV4"):
            return  # MLflow signs its requests with a plugin this check cannot reproduce
        given = ("no credentials were given (user:password in the URI, or "
                 "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)" if auth is None
                 else "check the user and password")
        raise TrackingError(f"MLflow at {shown} refused the credentials (HTTP {status}): {given}")
    raise TrackingError(f"MLflow at {shown} answered HTTP {status}")


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, before any tuning, when the tracking store cannot be used."""
    try:
        parts = urlsplit(uri)
    except ValueError as err:  # an unclosed IPv6 bracket
        raise TrackingError(f"MLflow tracking URI {redact_text(uri)!r}: {err}") from None
    if parts.scheme in ("http", "https"):
        _check_http(uri, timeout)
        return
    if parts.scheme == "sqlite":
        path = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
        if path is not None and str(path) not in ("", ":memory:"):
            parent = path.resolve().parent
            if not parent.is_dir() or not os.access(parent, os.W_OK):
                raise TrackingError(f"MLflow store {uri}: folder {str(parent)!r} is not writable")
        return
    if parts.scheme in ("", "file"):
        return
    if parts.scheme in ("postgresql", "mysql", "mssql") or parts.scheme.startswith(
        ("postgresql+", "mysql+")
    ):
        return
    raise TrackingError(f"MLflow tracking URI {redact(uri)}: unsupported scheme {parts.scheme!r}")


def check_artifact_location(cfg: TrackingConfig) -> None:
    """A local artifact folder must be creatable and writable before the run starts."""
    loc = artifact_location(cfg, resolve_tracking_uri(cfg))
    if loc is None or not loc.startswith("file://"):
        return
    folder = Path(urlsplit(loc).path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".paramaudit-probe-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise TrackingError(f"MLflow artifacts folder {str(folder)!r} is not writable: "
                            f"{err.strerror or err}") from None
