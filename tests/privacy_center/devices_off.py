"""The privacy center's Devices section with discovery turned off, in headless Chromium
(tests/privacy_center.rs runs this against a server started with MAESTRA_DISCOVERY=false).

Usage: devices_off.py BASE_URL SCREENSHOT_DIR

Checks, failing with an AssertionError: the section says finding devices is turned off and how
it is set, its Find devices button is disabled (nothing can start a search), no device is
listed, the configured services are (as GET /api/devices has them), and the page logs no
console error. It never asks for a search itself. Prints a JSON summary on success; a
screenshot goes to SCREENSHOT_DIR/devices-off.png.
"""

import json
import sys
import urllib.request

from browser import chromium  # tests/privacy_center/browser.py
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BASE, SHOTS = sys.argv[1:3]
ORIGIN = BASE.rstrip("/")

driver = chromium()
wait = WebDriverWait(driver, 60)
try:
    with urllib.request.urlopen(ORIGIN + "/api/devices", timeout=30) as r:
        api = json.loads(r.read())
    assert api["discovery"] is False and api["devices"] == [], api
    driver.get(ORIGIN + "/#devices")
    wait.until(lambda d: d.execute_script("return document.body.dataset.loaded") == "devices")
    off = driver.find_element(By.ID, "devices-off").text
    assert "turned off" in off and "MAESTRA_DISCOVERY" in off, off
    assert not driver.find_element(By.ID, "devices-find").is_enabled()
    assert driver.find_element(By.ID, "devices-empty").text == "No device found yet."
    services = [r.get_attribute("data-service")
                for r in driver.find_elements(By.CSS_SELECTOR, "#devices-body tbody tr[data-service]")]
    assert services == [s["service"] for s in api["services"]], (services, api["services"])
    driver.save_screenshot(f"{SHOTS}/devices-off.png")
    problems = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not problems, problems
    print(json.dumps({"services": services}))
except Exception:
    print(json.dumps(driver.get_log("browser"), indent=1), file=sys.stderr)
    raise
finally:
    driver.quit()
