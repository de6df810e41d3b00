"""Drives the privacy center in headless Chromium (tests/privacy_center.rs runs this).

Usage: drive.py BASE_URL SCREENSHOT_DIR FOREIGN_URL DELETE_ID FORGET_USER

Checks, failing with an AssertionError:
- the page loads with no console error and no request to any origin but the server's;
- every figure each section shows (its data-value, and its text) equals the API's answer,
  in the page's formats: bytes in decimal units ("1.1 MB", the exact count on hover), money
  as $x.xxxx, token counts with thousands separators;
- the report counts errors apart from calls (a failed call was seeded), and its byte
  figures read "1.1 MB" for the seeded 1.1 MB call;
- times show to the second in the browser's time zone (set to Asia/Kathmandu, UTC+05:45),
  the full UTC value on hover;
- spend shows the requests and tokens of each model beside the dollars;
- the vault says in words whether its key matches;
- delete and forget through the page (confirmed in the dialog) remove the data (the API
  no longer lists it; the Rust side checks the database files);
- the local-only switch changes what GET /api/privacy reports;
- a page on another origin can neither read /api/conversations nor post to a write endpoint;
- bad input to the page's endpoints gets the API's JSON errors.
Screenshots of each section (desktop and phone width) go to SCREENSHOT_DIR.
"""

import datetime
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from browser import chromium  # tests/privacy_center/browser.py
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BASE, SHOTS, FOREIGN, DELETE_ID, FORGET_USER = sys.argv[1:6]
ORIGIN = BASE.rstrip("/")


def api(path, method="GET", body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(ORIGIN + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("content-type", ""), json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), json.loads(e.read() or b"null")


def get_json(path):
    status, _, body = api(path)
    assert status == 200, (path, status, body)
    return body


def at(doc, path):
    for part in path.split("."):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def same(page_value, api_value):
    if isinstance(api_value, bool):
        return page_value == ("true" if api_value else "false")
    if isinstance(api_value, (int, float)):
        return abs(float(page_value) - float(api_value)) < 1e-9
    return page_value == str(api_value)


def human_bytes(n):
    """Bytes as the page writes them: decimal units, one decimal past 1000 B."""
    if n < 1000:
        return f"{n} B"
    x, units = n / 1000, ["kB", "MB", "GB", "TB", "PB", "EB"]
    i = 0
    while x >= 999.95 and i < len(units) - 1:
        x /= 1000
        i += 1
    return f"{x:.1f} {units[i]}"


def shown(path, api_value, text, title):
    """Whether a figure's text (and hover) is its value in the page's format for that field."""
    if isinstance(api_value, bool) or isinstance(api_value, str):
        return True
    last = path.split(".")[-1]
    if last.startswith("bytes_"):
        return text == human_bytes(api_value) and title == f"{api_value:,} bytes"
    if "usd" in last:
        return text == f"${float(api_value):.4f}"
    if last.startswith("tokens_") or last.startswith("total_tokens_"):
        return text == f"{api_value:,}"
    return text == str(api_value)


ZONE = "Asia/Kathmandu"
OFFSET = datetime.timedelta(hours=5, minutes=45)  # Nepal keeps no daylight saving time.


def check_times(name):
    """Every <time> of a section: local to the second in ZONE, the full UTC value on hover."""
    times = driver.find_elements(By.CSS_SELECTOR, f"#{name} time")
    for t in times:
        raw = t.get_attribute("data-time")
        # The page keeps milliseconds: what a browser's Date holds.
        iso = re.sub(r"(\.\d{3})\d+", r"\1", raw).replace("Z", "+00:00")
        utc = datetime.datetime.fromisoformat(iso).astimezone(datetime.timezone.utc)
        local = (utc + OFFSET).strftime("%Y-%m-%d %H:%M:%S")
        assert t.text == local, (name, raw, t.text, local)
        full = utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z (UTC)"
        assert t.get_attribute("title") == full, (name, raw, t.get_attribute("title"), full)
        assert t.get_attribute("datetime") == full.split(" ")[0], (name, raw)
    return len(times)


driver = chromium(performance_log=True)
# The viewer's zone: one far from UTC (and from this machine's), with a 45-minute offset.
driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": ZONE})
wait = WebDriverWait(driver, 20)
report = {"sections": {}}


def section(name, api_doc):
    driver.execute_script("document.body.dataset.loaded = ''")
    driver.get(ORIGIN + "/#" + name)
    wait.until(lambda d: d.execute_script("return document.body.dataset.loaded") == name)
    time.sleep(0.2)
    # The whole section in one picture: the window as tall as the page (bounded).
    height = driver.execute_script("return Math.min(3000, document.documentElement.scrollHeight)")
    driver.set_window_size(1280, max(900, height))
    driver.save_screenshot(f"{SHOTS}/{name}.png")
    driver.set_window_size(1280, 900)
    figures = driver.find_elements(By.CSS_SELECTOR, f"#{name} [data-figure]")
    checked = 0
    for f in figures:
        path, value, text = f.get_attribute("data-figure"), f.get_attribute("data-value"), f.text
        expected = at(api_doc, path)
        assert same(value, expected), (name, path, value, expected)
        assert shown(path, expected, text, f.get_attribute("title")), (name, path, text, f.get_attribute("title"), expected)
        checked += 1
    report["sections"][name] = checked
    report.setdefault("times", {})[name] = check_times(name)
    return checked


try:
    # 1. Load: no console error, nothing from another origin.
    driver.get(ORIGIN + "/")
    wait.until(lambda d: d.execute_script("return document.body.dataset.loaded") == "report")
    problems = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not problems, problems

    # The page names the zone as the browser's ICU does (its canonical name is the old spelling).
    zone_note = driver.find_element(By.ID, "tz").text
    assert "(Asia/Kathmandu)" in zone_note or "(Asia/Katmandu)" in zone_note, zone_note

    # 2. Every section shows the API's figures.
    rep7 = get_json("/api/report?period=7d")
    assert section("report", rep7) >= 20
    # The seeded 1.1 MB call: "1.1 MB", the exact count on hover.
    sent = driver.find_element(By.CSS_SELECTOR, '#report [data-figure="totals.bytes_sent"]')
    assert sent.text == "1.1 MB", sent.text
    assert sent.get_attribute("title") == f"{rep7['totals']['bytes_sent']:,} bytes"
    # Errors apart from calls: the failed cloud call, in the cards, per agent and per host.
    assert rep7["totals"]["errors"] >= 1, rep7["totals"]
    errors = driver.find_element(By.CSS_SELECTOR, '#report [data-figure="totals.errors"]')
    assert errors.text == str(rep7["totals"]["errors"])
    failed = [(i, j) for i, a in enumerate(rep7["agents"]) for j, d in enumerate(a["destinations"])
              if d["service"] == "openai" and d["errors"] > 0]
    assert failed, rep7["agents"]
    i, j = failed[0]
    cell = driver.find_element(By.CSS_SELECTOR, f'#report [data-figure="agents.{i}.destinations.{j}.errors"]')
    headers = [th.text for th in cell.find_element(By.XPATH, "ancestor::table").find_elements(By.CSS_SELECTOR, "thead th")]
    assert headers[2:5] == ["Calls", "Errors", "Blocked"], headers
    driver.find_element(By.ID, "report-period").send_keys("Last 30 days")
    time.sleep(0.5)
    spend = get_json("/api/spend?days=30")
    assert section("spend", spend) >= 7
    # Requests and tokens beside the dollars, per model as per day and user.
    model = [i for i, m in enumerate(spend["by_model"]) if m["key"] == "gpt-4o-mini"]
    assert model, spend["by_model"]
    row = driver.find_element(By.CSS_SELECTOR, f'#spend [data-figure="by_model.{model[0]}.usd"]').find_element(By.XPATH, "ancestor::tr")
    cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
    m = spend["by_model"][model[0]]
    assert cells == ["gpt-4o-mini", str(m["requests"]), f"{m['tokens_in']:,}", f"{m['tokens_out']:,}", f"${m['usd']:.4f}"], cells
    assert m["requests"] >= 1 and m["tokens_in"] > 0 and m["tokens_out"] > 0, m
    # No limit is near: no warning, here or in the banner.
    assert not driver.find_elements(By.CSS_SELECTOR, "#spend-warnings [data-warning]")
    assert not driver.find_element(By.ID, "limit-banner").is_displayed()
    convs = get_json("/api/conversations?limit=20&offset=0")
    assert section("conversations", convs) >= 1
    assert report["times"]["conversations"] == len(convs["conversations"]) > 0, report["times"]
    vault_doc = get_json("/api/vault")
    assert section("vault", vault_doc) >= 3
    status = driver.find_element(By.CSS_SELECTOR, '#vault [data-figure="key_status"]')
    assert vault_doc["key_status"] == "matches"
    assert status.text == "The encryption key in use matches the one your secrets were sealed with: the vault opens.", status.text
    assert "Key status" not in driver.find_element(By.ID, "vault").text
    audit_doc = get_json("/api/audit?limit=100&since=" + time.strftime("%Y-%m-%d", time.gmtime(time.time() - 6 * 86400)))
    assert section("audit", audit_doc) == 1
    assert report["times"]["audit"] == len(audit_doc["entries"]) > 0, report["times"]
    # Byte counts in the entries' details read like the report's, exact on hover.
    detail = driver.find_elements(By.CSS_SELECTOR, "#audit td.details span.bytes")
    assert detail, "no byte counts in the audit details"
    for d in detail:
        n = int(d.get_attribute("title").replace(" bytes", "").replace(",", ""))
        assert d.text == human_bytes(n), (d.text, n)
    assert section("controls", get_json("/api/privacy")) == 1

    # The report's figures add up to what /api/audit lists for the same days.
    rep = get_json("/api/report?period=7d")
    # A call: an entry of a service category, a local-only block, or a tool's `tools/call`
    # (a tool's pin, change or restart is an event, not a call).
    calls = [e for e in get_json("/api/audit?limit=1000&since=" + rep["since"])["entries"]
             if e["category"] in ("llm", "media", "smarthome", "creative", "local_only_block")
             or (e["category"] == "tool" and e["action"].startswith("tools/call "))]
    assert rep["totals"]["calls"] == len(calls), (rep["totals"], len(calls))
    assert rep["totals"]["blocked"] == sum(1 for e in calls if e["category"] == "local_only_block")
    measured = [e for e in calls if not e["details"].get("reported")]
    assert rep["totals"]["bytes_sent"] == sum(e["details"].get("bytes_sent", 0) for e in measured)
    assert rep["totals"]["bytes_received"] == sum(e["details"].get("bytes_received", 0) for e in measured)
    assert rep["totals"]["bytes_sent"] > 0 and rep["totals"]["bytes_received"] > 0

    # Audit: a verify started from the page reports how far the chain verified.
    driver.get(ORIGIN + "/#audit")
    wait.until(lambda d: d.execute_script("return document.body.dataset.loaded") == "audit")
    wait.until(lambda d: d.find_elements(By.ID, "audit-verify"))
    driver.find_element(By.ID, "audit-verify").click()
    wait.until(lambda d: "Verified through entry #" in d.find_element(By.ID, "chain-state").text)
    verified = get_json("/api/audit/verify")["job"]
    assert verified["result"]["ok"] and f"#{verified['result']['through_seq']}" in driver.find_element(By.ID, "chain-state").text
    assert check_times("audit-chain") == 1
    driver.save_screenshot(f"{SHOTS}/audit-verified.png")

    # Vault: a key rotation started from the page shows progress and leaves the vault open.
    driver.get(ORIGIN + "/#vault")
    wait.until(lambda d: d.execute_script("return document.body.dataset.loaded") == "vault")
    driver.find_element(By.ID, "vault-rotate").click()
    wait.until(lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is not None)
    driver.find_element(By.ID, "confirm-ok").click()
    wait.until(lambda d: "Key rotated" in d.find_element(By.ID, "vault-rotation").text)
    vault = get_json("/api/vault")
    assert vault["key_status"] == "matches" and vault["active_keys"] == 1, vault

    # 3. Delete one conversation and forget one user through the page, confirming each.
    driver.get(ORIGIN + "/#conversations")
    wait.until(lambda d: d.execute_script("return document.body.dataset.loaded") == "conversations")
    driver.find_element(By.CSS_SELECTOR, f'button[data-delete="{DELETE_ID}"]').click()
    wait.until(lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is not None)
    assert DELETE_ID in driver.find_element(By.ID, "confirm-text").text
    driver.save_screenshot(f"{SHOTS}/conversations-confirm.png")
    driver.find_element(By.ID, "confirm-ok").click()
    wait.until(lambda d: "Deleted " + DELETE_ID in d.find_element(By.ID, "conv-detail").text)
    status, ctype, body = api("/api/conversations/" + urllib.parse.quote(DELETE_ID))
    assert status == 404 and ctype.startswith("application/json") and body["error"]["code"] == "not_found", (status, body)

    box = driver.find_element(By.ID, "conv-user")
    box.clear()
    box.send_keys(FORGET_USER)
    # "Export everything" runs as a job with progress; the page reports what the API holds.
    expected = len(get_json("/api/conversations?user_id=" + FORGET_USER)["conversations"])
    driver.find_element(By.ID, "conv-export-user").click()
    wait.until(lambda d: f"Exported {expected} conversation(s) of {FORGET_USER}" in d.find_element(By.ID, "conv-detail").text)
    driver.find_element(By.ID, "conv-forget-user").click()
    wait.until(lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is not None)
    driver.find_element(By.ID, "confirm-ok").click()
    wait.until(lambda d: "Forgot " + FORGET_USER in d.find_element(By.ID, "conv-detail").text)
    left = get_json("/api/conversations?user_id=" + FORGET_USER)["conversations"]
    assert left == [], left

    # 4. The local-only switch: what /api/privacy reports follows it.
    assert get_json("/api/privacy")["local_only"] is False
    driver.get(ORIGIN + "/#controls")
    wait.until(lambda d: d.execute_script("return document.body.dataset.loaded") == "controls")
    driver.find_element(By.ID, "local-only-toggle").click()
    wait.until(lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is not None)
    driver.find_element(By.ID, "confirm-ok").click()
    wait.until(lambda d: "Local-only is now on" in d.find_element(By.ID, "controls-body").text)
    assert get_json("/api/privacy")["local_only"] is True
    driver.save_screenshot(f"{SHOTS}/controls-local-only-on.png")

    # Every request the page made went to the server itself.
    urls = set()
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.add(msg["params"]["request"]["url"])
    foreign = [u for u in urls if not (u.startswith(ORIGIN + "/") or u.startswith("blob:" + ORIGIN))]
    assert urls and not foreign, foreign
    report["requests"] = len(urls)
    problems = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not problems, problems

    # Phone width: the menu and sections still fit.
    driver.set_window_size(390, 844)
    for name in ["report", "conversations", "controls"]:
        driver.get(ORIGIN + "/#" + name)
        wait.until(lambda d, n=name: d.execute_script("return document.body.dataset.loaded") == n)
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 400, (name, width)
        driver.save_screenshot(f"{SHOTS}/{name}-phone.png")
    driver.set_window_size(1280, 900)

    # 5. Another origin (a page on another port) can neither read nor write.
    before = get_json("/api/privacy")["local_only"]
    driver.get(FOREIGN)
    wait.until(lambda d: d.execute_script("return window.done === true"))
    outcome = driver.execute_script("return window.outcome")
    assert outcome["read"].startswith("blocked"), outcome
    assert outcome["write"].startswith("blocked"), outcome
    time.sleep(1.0)  # the form post
    assert get_json("/api/privacy")["local_only"] == before
    report["foreign"] = outcome

    # 6. Bad input through the page's endpoints: the API's JSON errors.
    for path, code in [("/api/report?period=99999d", 400), ("/api/report?perod=7d", 400),
                       ("/api/spend?days=100000", 400), ("/api/spend?days=-1", 400),
                       ("/api/jobs/no_such_job", 404), ("/api/audit?category=bogus", 400),
                       ("/api/audit?result=maybe", 400), ("/api/audit?since=yesterday", 400),
                       ("/api/conversations/no_such_conversation", 404)]:
        status, ctype, body = api(path)
        assert status == code and ctype.startswith("application/json") and "error" in body, (path, status, body)
    for path, body, code in [("/api/controls/local-only", {"on": "yes"}, 400),
                             ("/api/controls/lockdown", {"confirm": False}, 400),
                             ("/api/vault/rotate", {}, 400), ("/api/audit/verify", {"x": 1}, 400)]:
        status, ctype, answer = api(path, "POST", body)
        assert status == code and ctype.startswith("application/json") and "error" in answer, (path, status, answer)
    print(json.dumps(report))
finally:
    driver.quit()
