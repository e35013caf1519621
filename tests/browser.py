"""Headless Chromium for page tests: Debian's chromium and chromium-driver (.ci/run installs
them), driven by selenium with the system chromedriver, so nothing is downloaded. Where they
are missing the browser tests are skipped, except under CI, where that is a failure."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = ("/usr/bin/chromium", "chromium", "chromium-browser")
DRIVER = ("/usr/bin/chromedriver", "chromedriver")


def _find(names) -> str | None:
    for name in names:
        found = shutil.which(name) or (name if Path(name).is_file() else None)
        if found:
            return found
    return None


def headless_chromium(width: int = 1280, height: int = 900):
    """A selenium WebDriver on headless Chromium, or a skip (a failure under CI)."""
    browser, driver = _find(CHROMIUM), _find(DRIVER)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        browser = None
    if browser is None or driver is None:
        message = ("headless Chromium is not installed: apt-get install -y chromium "
                   "chromium-driver, and pip install '.[test]' for selenium")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--hide-scrollbars"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


def full_page_screenshot(driver, path: Path, width: int = 1280) -> Path:
    """The whole page, not only the window: the window is resized to the page's height."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(int(height) + 40, 16000))
    driver.save_screenshot(str(path))
    return path
