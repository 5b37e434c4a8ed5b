"""A real headless Chromium for the tests, driven by selenium through Debian's chromedriver.

Tests that need it take the ``browser`` fixture. Where Chromium is missing they are skipped, unless
``HARNESS_REQUIRE_BROWSER=1`` (set by ``.ci/run``, which installs Debian's ``chromium`` and
``chromium-driver``): then a missing browser fails them.
"""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
DRIVER = ("/usr/bin/chromedriver",)
#: flags of a headless Chromium on a machine without network or display (see the project's CI notes:
#: without the background-networking flags Chromium tries to reach Google's hosts at every start)
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1600")


def _first(paths) -> str | None:
    return next((p for p in paths if os.path.exists(p)), None)


@pytest.fixture
def browser(tmp_path):
    """A selenium ``webdriver.Chrome`` on headless Chromium, closed after the test."""
    chromium, driver = _first(CHROMIUM), _first(DRIVER) or shutil.which("chromedriver")
    if not chromium or not driver:
        if os.environ.get("HARNESS_REQUIRE_BROWSER") == "1":
            pytest.fail("HARNESS_REQUIRE_BROWSER=1 but Chromium or chromedriver is missing: "
                        "apt-get install chromium chromium-driver")
        pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    drv = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    try:
        yield drv
    finally:
        drv.quit()
