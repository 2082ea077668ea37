"""Headless Chromium for the tests that look at the HTML report as a user's browser shows it (`make setup-browser`)."""

import shutil
import subprocess
from pathlib import Path

import pytest


def screenshot(html: Path, png: Path, profile: Path, size: str) -> None:
    """A screenshot of ``html`` in a window of ``size`` ("WIDTH,HEIGHT")."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("headless Chromium is missing: `make setup-browser` (run by `make test`) installs Debian's "
                    "chromium package", pytrace=False)
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={profile}", "--hide-scrollbars", f"--window-size={size}",
                    f"--screenshot={png}", html.as_uri()], check=True, capture_output=True, timeout=120)
