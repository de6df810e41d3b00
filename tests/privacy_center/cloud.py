"""The privacy center in cloud mode (tests/privacy_center.rs runs this).

Usage: cloud.py BASE_URL ADMIN_KEY SCREENSHOT_DIR

The page asks for a key before reading anything; the key is kept in the tab's
sessionStorage (never in the URL or a cookie) and sent as a header; the sections then load.

Spend was seeded so that the global daily limit is reached, the monthly one 80 % used, and
of the three keys (center, laptop, phone) the laptop's daily limit 80 % used and its monthly
one reached. The page must warn of exactly those, on every section for the global limits,
and show one row per key with the API's calls, errors, requests, tokens and spend.
"""

import json
import sys
import urllib.request

from browser import chromium  # tests/privacy_center/browser.py
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BASE, KEY, SHOTS = sys.argv[1:4]
ORIGIN = BASE.rstrip("/")


def get_json(path):
    req = urllib.request.Request(ORIGIN + path, headers={"X-API-Key": KEY})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def at(doc, path):
    for part in path.split("."):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def warnings(selector):
    found = driver.find_elements(By.CSS_SELECTOR, f"{selector} [data-warning]")
    return {w.get_attribute("data-warning"): w.get_attribute("data-level") for w in found}

driver = chromium()
wait = WebDriverWait(driver, 20)
try:
    driver.get(ORIGIN + "/")
    wait.until(lambda d: d.find_element(By.ID, "login").is_displayed())
    assert not driver.find_element(By.ID, "report").is_displayed()
    driver.save_screenshot(f"{SHOTS}/cloud-login.png")
    driver.find_element(By.ID, "api-key").send_keys(KEY)
    driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    wait.until(lambda d: d.execute_script("return document.body.dataset.loaded") == "report")
    assert not driver.find_element(By.ID, "login").is_displayed()
    assert driver.execute_script("return sessionStorage.getItem('maestra.apiKey')") == KEY
    assert driver.execute_script("return document.cookie") == ""
    assert KEY not in driver.current_url
    assert "Cloud mode" in driver.find_element(By.ID, "status").text
    # The global limits' warnings show on every section, the reached one as an alert.
    banner = driver.find_element(By.ID, "limit-banner")
    assert banner.is_displayed()
    assert warnings("#limit-banner") == {"daily": "reached", "monthly": "near"}, warnings("#limit-banner")
    alert = banner.find_element(By.CSS_SELECTOR, '[data-warning="daily"]')
    assert alert.get_attribute("role") == "alert" and "paid calls are refused" in alert.text, alert.text
    assert "83 % used" in banner.find_element(By.CSS_SELECTOR, '[data-warning="monthly"]').text
    driver.save_screenshot(f"{SHOTS}/cloud-banner.png")

    # Spend: the warnings of each limit, and the per-key view.
    driver.get(ORIGIN + "/#spend")
    wait.until(lambda d: d.execute_script("return document.body.dataset.loaded") == "spend")
    spend = get_json("/api/spend?days=30")
    # Spend says them in detail: the banner steps aside there.
    assert not driver.find_element(By.ID, "limit-banner").is_displayed()
    assert warnings("#spend-warnings") == {
        "daily": "reached", "monthly": "near", "key:laptop:daily": "near", "key:laptop:monthly": "reached",
    }, warnings("#spend-warnings")
    assert "limit-reached" in driver.find_element(By.CSS_SELECTOR, '#spend [data-limit="daily"]').get_attribute("class")
    assert "limit-near" in driver.find_element(By.CSS_SELECTOR, '#spend [data-limit="monthly"]').get_attribute("class")
    figures = driver.find_elements(By.CSS_SELECTOR, "#spend [data-figure]")
    for f in figures:
        path, value = f.get_attribute("data-figure"), f.get_attribute("data-value")
        assert abs(float(value) - float(at(spend, path))) < 1e-9, (path, value, at(spend, path))
    rows = driver.find_elements(By.CSS_SELECTOR, '#spend table[data-table="by_key"] tbody tr')
    shown = {r.get_attribute("data-key"): [td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in rows}
    assert set(shown) == {"center", "laptop", "phone"}, shown
    head = [th.text for th in driver.find_elements(By.CSS_SELECTOR, '#spend table[data-table="by_key"] thead th')]
    assert head == ["Key", "Calls", "Errors", "Requests", "Tokens in", "Tokens out", "Spent", "Today", "This month"], head
    for k in spend["by_key"]:
        cells = shown[k["key"]]
        assert cells[:7] == [k["key"], str(k["calls"]), str(k["errors"]), str(k["requests"]),
                             f"{k['tokens_in']:,}", f"{k['tokens_out']:,}", f"${k['usd']:.4f}"], (k, cells)
    assert shown["phone"][2] == "1" and shown["laptop"][3] == "2", shown
    driver.save_screenshot(f"{SHOTS}/cloud-spend.png")
    driver.get(ORIGIN + "/#vault")
    wait.until(lambda d: d.execute_script("return document.body.dataset.loaded") == "vault")
    source = driver.find_element(By.CSS_SELECTOR, "#vault [data-figure=key_source]")
    assert source.text == "A key file in Maestra's home (keys/vault.key).", source.text
    status = driver.find_element(By.CSS_SELECTOR, "#vault [data-figure=key_status]")
    assert status.get_attribute("data-value") == get_json("/api/vault")["key_status"] == "matches"
    assert status.text.startswith("The encryption key in use matches"), status.text
    driver.save_screenshot(f"{SHOTS}/cloud-vault.png")
    print("ok")
finally:
    driver.quit()
