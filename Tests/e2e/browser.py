"""Headless Chromium for the browser tests: Debian's chromium and chromium-driver, driven by selenium offline."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import REPO

CHROMIUM = os.environ.get("TASKGATE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TASKGATE_CHROMEDRIVER", "/usr/bin/chromedriver")
SCREENSHOTS = REPO / "build" / "screenshots"


def browser_available() -> bool:
    return all(Path(p).exists() or shutil.which(p) for p in (CHROMIUM, CHROMEDRIVER))


def launch_browser(window_size: str):
    """A headless Chromium; skips the test when none is installed, unless TASKGATE_REQUIRE_BROWSER is set (CI)."""
    if not browser_available():
        if os.environ.get("TASKGATE_REQUIRE_BROWSER"):
            pytest.fail(f"TASKGATE_REQUIRE_BROWSER is set but {CHROMIUM} / {CHROMEDRIVER} are missing")
        pytest.skip(f"chromium ({CHROMIUM}) or chromedriver ({CHROMEDRIVER}) not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # An explicit driver path: selenium would otherwise try to download one.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={window_size}", "--no-proxy-server", "--disable-extensions"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return driver
