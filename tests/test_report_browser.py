"""The HTML report in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by Selenium, offline.

Checks that every embedded figure decodes (``naturalWidth > 0``), that the page makes
no request outside itself (DevTools network events from the performance log: only the
``file://`` page and ``data:`` URIs), that the console stays clean, and takes a
full-page screenshot. A control page with one external image proves the network check
sees requests that leave the page.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from test_report import make_run_dir

from robench.plugins import build_registry
from robench.report import render_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip(
    "selenium.webdriver",
    reason="selenium is not installed (pip install 'selenium>=4.20,<4.33')")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="headless Chromium not installed "
           "(apt-get install -y chromium chromium-driver)")

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--no-first-run",
         "--no-default-browser-check", "--window-size=1280,1000")


@pytest.fixture
def browser(tmp_path):
    """A fresh headless Chromium with DevTools performance (network) logging."""
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _open(driver, path):
    """Load ``path`` and return the URLs of every request the page made."""
    driver.get_log("performance")  # drop events from before this page
    driver.get(path.resolve().as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_report_renders_offline_in_chromium(browser, tmp_path):
    run_dir = make_run_dir(tmp_path / "run")
    page = render_report(run_dir, registry=build_registry(autoload=False),
                         formats=("html",))["html"]
    urls = _open(browser, page)
    assert urls and urls[0] == page.resolve().as_uri()
    leaving = [u for u in urls if not u.startswith(("file://", "data:"))]
    assert leaving == []

    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, "
        "i.naturalHeight, i.src.slice(0, 22)])")
    assert len(images) >= 6
    for complete, width, height, src in images:
        assert complete and width > 100 and height > 100 and src == "data:image/png;base64,"
    headings = browser.execute_script(
        "return Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
    # the answer first: failures, then every attack's curve and the worst case per configuration
    assert headings[:3] == ["Failures", "Robustness at a glance", "Summary"]
    assert "swap exploded" in browser.find_element("tag name", "body").text
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []

    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(height, 12000))
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    assert np.std(pixels[..., :3]) > 0.05  # text, tables and figures, not a blank page


def test_network_check_sees_external_requests(browser, tmp_path):
    page = tmp_path / "control.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://127.0.0.1:9/x.png">'
                    "</body></html>")
    urls = _open(browser, page)
    assert "http://127.0.0.1:9/x.png" in urls
    width = browser.execute_script("return document.images[0].naturalWidth")
    assert width == 0
