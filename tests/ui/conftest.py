"""Fixtures of the web UI's tests: `featureline ui` as a real subprocess
(ui_process.start_ui) and one headless Chromium (Debian's chromium + chromium-driver,
driven by Selenium) per module.

The serving tests' helpers (tests/serving/serving_data.py: the serving repo and its
data writers) are imported from their folder, which pytest puts on sys.path only when
it collects tests/serving itself.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_SERVING = str(Path(__file__).resolve().parents[1] / "serving")
if _SERVING not in sys.path:
    sys.path.append(_SERVING)

# Debian's packages (Makefile's apt line); a missing one fails the tests, never skips them.
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for binary in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(binary), f"{binary} is missing: apt-get install chromium chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    # A page that does not load in 20 s is a failure, not a hang of the whole suite.
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
