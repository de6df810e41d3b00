"""The privacy center's Devices section in headless Chromium (tests/discover_server.rs runs
this inside the discovering namespace, beside the server).

Usage: devices.py BASE_URL SCREENSHOT_DIR EXPECTED MARKUP_NAME

EXPECTED is a JSON list of [kind, "address:port"] devices the responder's namespace holds.

Checks, failing with an AssertionError:
- before any run the section says no device was found yet, and lists the configured service
  with the API's figures (data-value) as text;
- Find devices starts a run (POST /api/services/discover), the page polls it, says how many
  answered, and lists every EXPECTED device, each row's cells being the API's (GET
  /api/devices) as text;
- every name is text: the name cells hold no element, and the printer's name, HTML-escaped
  markup (MARKUP_NAME), reads exactly as the API has it, not as what innerHTML would make of it;
- the page logs no console error.
Prints a JSON summary on success; a screenshot goes to SCREENSHOT_DIR/devices.png. Every wait
has a deadline (a hang guard), none is a fixed sleep.
"""

import json
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "privacy_center"))
from browser import chromium  # noqa: E402  (tests/privacy_center/browser.py)
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BASE, SHOTS, EXPECTED, MARKUP_NAME = sys.argv[1:5]
ORIGIN = BASE.rstrip("/")
EXPECTED = json.loads(EXPECTED)
WITHIN = 120


def get_json(path):
    with urllib.request.urlopen(ORIGIN + path, timeout=30) as r:
        return json.loads(r.read())


def wait_for_server():
    wait_until = WebDriverWait(None, WITHIN, poll_frequency=0.2, ignored_exceptions=(OSError,))
    wait_until.until(lambda _: get_json("/health"))


def host_port(d):
    address = f"[{d['address']}]" if ":" in d["address"] else d["address"]
    return f"{address}:{d['port']}"


wait_for_server()
driver = chromium()
wait = WebDriverWait(driver, WITHIN)
out = {}
try:
    driver.get(ORIGIN + "/#devices")
    wait.until(lambda d: d.execute_script("return document.body.dataset.loaded") == "devices")
    section = driver.find_element(By.ID, "devices")
    assert section.is_displayed() and not driver.find_element(By.ID, "report").is_displayed()
    nav = driver.find_element(By.CSS_SELECTOR, '.menu a[data-section="devices"]')
    assert nav.text == "Devices" and nav.get_attribute("aria-current") == "page"
    assert driver.find_element(By.ID, "devices-empty").text == "No device found yet."
    before = get_json("/api/devices?period=7d")
    service_rows = section.find_elements(By.CSS_SELECTOR, "tbody tr[data-service]")
    assert [r.get_attribute("data-service") for r in service_rows] == \
        [s["service"] for s in before["services"]], before["services"]
    for f in section.find_elements(By.CSS_SELECTOR, "[data-figure]"):
        i, name = f.get_attribute("data-figure").split(".")[1:]
        value = str(before["services"][int(i)][name])
        assert f.get_attribute("data-value") == value == f.text, (f.text, value)

    button = driver.find_element(By.ID, "devices-find")
    assert button.text == "Find devices" and button.is_enabled()
    button.click()
    result = wait.until(lambda d: d.find_elements(By.ID, "devices-result"))[0]
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#devices-body tbody tr[data-device]"))
    api = get_json("/api/devices?period=7d")
    assert result.text.startswith(f"{len(api['devices'])} device"), (result.text, len(api["devices"]))

    rows = {r.get_attribute("data-device"): r
            for r in driver.find_elements(By.CSS_SELECTOR, "#devices-body tbody tr[data-device]")}
    assert len(rows) == len(api["devices"]), (sorted(rows), len(api["devices"]))
    for kind, where in EXPECTED:
        assert f"{kind} {where}" in rows, (kind, where, sorted(rows))
    markup_shown = None
    for d in api["devices"]:
        row = rows[f"{d['kind']} {host_port(d)}"]
        cells = row.find_elements(By.TAG_NAME, "td")
        assert cells[0].text == d["kind"] and cells[2].text == host_port(d), [c.text for c in cells]
        assert cells[3].text == " + ".join(d["found_by"]), (cells[3].text, d["found_by"])
        name = cells[1]
        assert name.find_elements(By.XPATH, "./*") == [], name.get_attribute("innerHTML")
        assert name.text == (d["name"] or "\u2014"), (name.text, d["name"])
        if d["configured"]:
            assert cells[4].text == f"configured as {d['configured']}", cells[4].text
        if d["kind"] == "printer":
            markup_shown = name.text
        t = row.find_element(By.TAG_NAME, "time")
        assert t.get_attribute("data-time") == d["last_seen"], (t.get_attribute("data-time"), d)
    assert markup_shown == MARKUP_NAME, (markup_shown, MARKUP_NAME)
    # Nothing the network announced became an element anywhere on the page.
    assert not driver.find_elements(By.CSS_SELECTOR, "main img, main b, main script")
    last = driver.find_element(By.ID, "devices-last").find_element(By.TAG_NAME, "time")
    assert last.get_attribute("data-time") == api["last_run"], (last.get_attribute("data-time"), api)
    driver.save_screenshot(f"{SHOTS}/devices.png")
    problems = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not problems, problems
    out = {"rows": len(rows), "markup_name": markup_shown}
    print(json.dumps(out))
except Exception:
    # What the page said, for the failure's report.
    print(json.dumps(driver.get_log("browser"), indent=1), file=sys.stderr)
    raise
finally:
    driver.quit()
