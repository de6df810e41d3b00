"""Headless Debian Chromium for the browser tests, with one set of options: no sandbox (the
tests run as root, some in a network namespace), no first-run, sync or update traffic, and the
page's console kept so a test can assert it stayed clean."""

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ARGS = ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
        "--window-size=1280,900", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-default-apps",
        "--disable-extensions"]


def chromium(performance_log: bool = False) -> webdriver.Chrome:
    """A driver for /usr/bin/chromium; `performance_log` also keeps the network's events."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ARGS:
        options.add_argument(arg)
    logs = {"browser": "ALL"}
    if performance_log:
        logs["performance"] = "ALL"
    options.set_capability("goog:loggingPrefs", logs)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
