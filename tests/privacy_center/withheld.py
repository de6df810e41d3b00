"""The privacy center's report of what minimisation withheld from cloud calls, in headless
Chromium (tests/privacy_center.rs runs this after cloud calls that carried personal data).

Usage: withheld.py BASE_URL SCREENSHOT_DIR

Checks, failing with an AssertionError: the Report section's "Withheld from the cloud" card
shows GET /api/report's total, its table has one row per day and provider with the API's
count, no withheld value appears anywhere in the page (the page only ever gets counts), and
the page logs no console error. Prints the rows as JSON; a screenshot goes to
SCREENSHOT_DIR/withheld.png.
"""

import json
import sys
import urllib.request

from browser import chromium  # tests/privacy_center/browser.py
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BASE, SHOTS, *VALUES = sys.argv[1:]
ORIGIN = BASE.rstrip("/")

driver = chromium()
wait = WebDriverWait(driver, 60)
try:
    with urllib.request.urlopen(ORIGIN + "/api/report?period=7d", timeout=30) as r:
        api = json.loads(r.read())
    driver.get(ORIGIN + "/#report")
    wait.until(lambda d: d.execute_script("return document.body.dataset.loaded") == "report")
    card = driver.find_element(By.CSS_SELECTOR, '#report-body [data-figure="totals.withheld"]')
    assert card.get_attribute("data-value") == str(api["totals"]["withheld"]), card.text
    rows = []
    for tr in driver.find_elements(By.CSS_SELECTOR, '#report-body table[data-table="withheld"] tbody tr'):
        cell = tr.find_element(By.CSS_SELECTOR, "[data-figure]")
        rows.append({"day": tr.get_attribute("data-day"), "service": tr.get_attribute("data-service"),
                     "values": int(cell.get_attribute("data-value")), "shown": cell.text})
    assert [{k: r[k] for k in ("day", "service", "values")} for r in rows] == api["withheld"], (rows, api)
    page = driver.find_element(By.TAG_NAME, "body").text
    for v in VALUES:
        assert v not in page, f"a withheld value is on the page: {v!r}"
    table = driver.find_element(By.CSS_SELECTOR, '#report-body table[data-table="withheld"]')
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", table)
    driver.save_screenshot(f"{SHOTS}/withheld.png")
    problems = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not problems, problems
    print(json.dumps(rows))
except Exception:
    print(json.dumps(driver.get_log("browser"), indent=1), file=sys.stderr)
    raise
finally:
    driver.quit()
