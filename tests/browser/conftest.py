"""Headless Chromium (Debian's `chromium` package, driven by Playwright) against servers
started in their own process group, bound to 127.0.0.1, and always stopped.

Playwright's own browser download needs the internet; these tests use the system's
Chromium (``apt-get install chromium``; .ci/run installs it). Without it they are skipped,
except under CI (the ``CI`` variable set), where they fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

SCREENSHOTS = PROJECT_ROOT / "screenshots"  # kept by CI (.ci/run); git-ignored
VIEWPORT = {"width": 1600, "height": 1000}


def chromium_path() -> str:
    found = os.environ.get("BNSTUDY_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "needs Debian's chromium (apt-get install chromium) or BNSTUDY_CHROMIUM"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT)
    opened = context.new_page()
    yield opened
    context.close()


def screenshot(page, name: str) -> Path:
    """Save the page at 1600x1000 as screenshots/<name>.png."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def free_port() -> int:
    """A free port on 127.0.0.1 below 49152 (kedro viz refuses the ephemeral range above)."""
    import random

    for port in random.sample(range(20_000, 49_000), 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port on 127.0.0.1 in 20000-49000")


@contextlib.contextmanager
def serving(command: list[str], url: str, cwd: Path, timeout_s: float = 180,
            env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``command`` (a server) in its own process group until ``url`` answers; stop the
    whole group afterwards (servers like `kedro viz` and `mlflow ui` spawn children)."""
    log = cwd.parent / f"server-{int(time.time() * 1000)}.log"
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", **(env or {})})
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise AssertionError(f"{command} exited {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"{url} did not answer in {timeout_s} s:\n"
                                         f"{log.read_text()[-3000:]}") from None
                time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
