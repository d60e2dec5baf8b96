"""Real headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by
Selenium, for the dashboard's browser tests (``chromium.py`` wraps it for async tests).

Without Chromium the tests skip, saying what to install; in CI (``CI`` or
``HEALTHWATCH_REQUIRE_BROWSER`` set) they fail instead, so a missing browser is never
mistaken for a pass.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = os.environ.get("HEALTHWATCH_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("HEALTHWATCH_CHROMEDRIVER", "/usr/bin/chromedriver")
INSTALL = "apt-get install -y chromium chromium-driver && pip install selenium"


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            return f"{path} not found"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed"
    return None


def _required() -> bool:
    return any(os.environ.get(v) for v in ("CI", "HEALTHWATCH_REQUIRE_BROWSER"))


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium WebDriver for the module (starting one costs a second)."""
    problem = _missing()
    if problem:
        message = f"real Chromium needed for the dashboard tests: {problem}; run: {INSTALL}"
        if _required():
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # containers run as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        "--lang=en-US",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
