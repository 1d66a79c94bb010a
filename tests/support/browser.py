"""A real headless Chromium (Debian's /usr/bin/chromium, installed by .ci/run) driven by Playwright.

Never `playwright install`: it downloads a browser build, which cannot happen here. The flags keep
Chromium off the network (no background updates, sync or QUIC) and a fresh profile per launch.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import BrowserContext, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--metrics-recording-only",
    "--no-default-browser-check",
]


@contextmanager
def chromium(viewport: tuple[int, int] = (1280, 900)) -> Iterator[BrowserContext]:
    """A browser context in a fresh profile directory, removed afterwards."""
    profile = tempfile.mkdtemp(prefix="ftapi-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                headless=True,
                args=FLAGS,
                viewport={"width": viewport[0], "height": viewport[1]},
                accept_downloads=True,
            )
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
