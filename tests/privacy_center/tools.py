"""The privacy center's Tools section in headless Chromium (tests/privacy_center.rs runs this).

Usage: tools.py BASE_URL SCREENSHOT_DIR EXPECTED

EXPECTED is a JSON list of [server, tool, calls, errors, blocked] rows, most calls first; an
empty list means no tool was called yet.

Checks, failing with an AssertionError:
- with no tool call, the section says "No tool calls in this period." and lists nothing;
- otherwise it lists exactly the expected rows, in order, each figure the API's (data-value)
  and as text, and the last use as a <time> in the browser's zone (Asia/Kathmandu, UTC+05:45)
  with the API's `last_used` as its UTC value on hover;
- a row's "audit entries" link opens the Audit section filtered to that server, where its
  `tools/call` entries are listed;
- the page logs no console error.
Prints a JSON summary on success; a screenshot goes to SCREENSHOT_DIR.
"""

import datetime
import json
import sys
import urllib.request

from browser import chromium  # tests/privacy_center/browser.py
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BASE, SHOTS, EXPECTED = sys.argv[1:4]
ORIGIN = BASE.rstrip("/")
EXPECTED = json.loads(EXPECTED)
ZONE = "Asia/Kathmandu"
OFFSET = datetime.timedelta(hours=5, minutes=45)  # Nepal keeps no daylight saving time.


def get_json(path):
    with urllib.request.urlopen(ORIGIN + path, timeout=10) as r:
        return json.loads(r.read())


def at(doc, path):
    for part in path.split("."):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def loaded(name):
    wait.until(lambda d: d.execute_script("return document.body.dataset.loaded") == name)


driver = chromium()
driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": ZONE})
wait = WebDriverWait(driver, 20)
out = {}
try:
    driver.get(ORIGIN + "/#tools")
    loaded("tools")
    section = driver.find_element(By.ID, "tools")
    assert section.is_displayed() and not driver.find_element(By.ID, "report").is_displayed()
    nav = driver.find_element(By.CSS_SELECTOR, '.menu a[data-section="tools"]')
    assert nav.text == "Tools" and nav.get_attribute("aria-current") == "page"
    # The page's period (7 days by default) is the API's.
    report = get_json("/api/report?period=7d")
    rows = section.find_elements(By.CSS_SELECTOR, "tbody tr[data-tool]")
    if not EXPECTED:
        assert report["tools"] == [], report["tools"]
        assert section.find_element(By.ID, "tools-empty").text == "No tool calls in this period."
        assert rows == [], [r.text for r in rows]
        driver.save_screenshot(f"{SHOTS}/tools-empty.png")
        out["empty"] = True
    else:
        head = [th.text for th in section.find_elements(By.CSS_SELECTOR, "thead th")]
        assert head == ["Server", "Tool", "Calls", "Errors", "Blocked", "Last use", ""], head
        assert not section.find_elements(By.ID, "tools-empty")
        shown = []
        for r in rows:
            cells = r.find_elements(By.TAG_NAME, "td")
            shown.append([r.get_attribute("data-server"), r.get_attribute("data-tool"),
                          *[int(c.text) for c in cells[2:5]]])
            assert [c.text for c in cells[:2]] == shown[-1][:2], [c.text for c in cells]
        assert shown == EXPECTED, (shown, EXPECTED)
        # Every figure is the API's, at the place it names.
        figures = section.find_elements(By.CSS_SELECTOR, "[data-figure]")
        assert len(figures) == 3 * len(EXPECTED), len(figures)
        for f in figures:
            path = f.get_attribute("data-figure")
            assert f.get_attribute("data-value") == str(at(report, path)) == f.text, (path, f.text)
        # The last use: local to the second, the API's UTC value on hover.
        for i, r in enumerate(rows):
            last = report["tools"][i]["last_used"]
            t = r.find_element(By.TAG_NAME, "time")
            assert t.get_attribute("data-time") == last, (t.get_attribute("data-time"), last)
            utc = datetime.datetime.fromisoformat(last.replace("Z", "+00:00"))
            assert t.text == (utc + OFFSET).strftime("%Y-%m-%d %H:%M:%S"), (t.text, last)
            assert t.get_attribute("title") == utc.strftime("%Y-%m-%dT%H:%M:%S.000Z (UTC)")
        driver.save_screenshot(f"{SHOTS}/tools.png")
        # A row's audit entries: the Audit section, filtered to its server.
        server, tool = EXPECTED[0][:2]
        rows[0].find_element(By.LINK_TEXT, "audit entries").click()
        loaded("audit")
        assert driver.find_element(By.ID, "audit-service").get_attribute("value") == server
        actions = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#audit-body tbody td:nth-child(7)")]
        assert actions.count(f"tools/call {tool}") == EXPECTED[0][2], actions
        out["rows"] = shown
    problems = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not problems, problems
    print(json.dumps(out))
except Exception:
    # What the page said, for the failure's report.
    print(json.dumps(driver.get_log("browser"), indent=1), file=sys.stderr)
    raise
finally:
    driver.quit()
