"""Headless Chromium for the UI checks: Debian's chromium, driven by Playwright.

Playwright drives the system browser (/usr/bin/chromium, installed with apt when missing); no
browser is downloaded. Everything the browser does stays on loopback: pages come from servers on
127.0.0.1, and any other address goes to a closed loopback port (a dead proxy) and fails there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEAD_PROXY = "http://127.0.0.1:9"
ARGS = [
    "--no-sandbox",  # root in a container
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--metrics-recording-only",
    f"--proxy-server={DEAD_PROXY}",  # loopback itself is never proxied
]
VIEWPORT = {"width": 1600, "height": 1000}
APT = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium"


def chromium_path() -> str | None:
    """The system Chromium, if installed."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def ensure_chromium(timeout: float = 600) -> str:
    """Chromium's path; installs Debian's package first when it is missing (needs root)."""
    found = chromium_path()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError(f"chromium is not installed and cannot be installed here: run `{APT}`")
    proc = subprocess.run(["bash", "-c", APT], capture_output=True, text=True, timeout=timeout)
    found = chromium_path()
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"installing chromium failed ({proc.returncode}): "
                           f"{(proc.stdout + proc.stderr)[-2000:]}")
    return found


@contextlib.contextmanager
def browser(executable: str, user_data_dir: Path) -> Iterator[Any]:
    """A headless Chromium (Playwright Browser) that is closed however the block ends."""
    from playwright.sync_api import sync_playwright

    user_data_dir.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, headless=True,
                               args=ARGS + [f"--disk-cache-dir={user_data_dir / 'cache'}"])
        try:
            yield b
        finally:
            b.close()


def new_page(b: Any, timeout_ms: int = 30_000) -> Any:
    """A page the size of a laptop screen that records requests leaving loopback."""
    page = b.new_page(viewport=VIEWPORT)
    page.set_default_timeout(timeout_ms)
    page.offsite_requests = []  # read by the tests: requests that left loopback

    def record(request: Any) -> None:
        url = request.url
        if not url.startswith(("http://127.0.0.1", "data:", "blob:", "about:")):
            page.offsite_requests.append(url)

    page.on("request", record)
    return page


def text(page: Any) -> str:
    """What a person can read on the page."""
    return page.locator("body").inner_text()


def screenshot(page: Any, path: Path) -> Path:
    """A PNG of the viewport, after the page has settled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(Exception):
        page.wait_for_load_state("networkidle", timeout=5_000)
    page.screenshot(path=str(path))
    return path
