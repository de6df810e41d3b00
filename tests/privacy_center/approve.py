"""A tool call waiting for approval, decided in the privacy center (tests/mcp_ask.rs runs this).

Usage: approve.py BASE_URL SCREENSHOT_DIR TOOL ASKED_BY

One call of TOOL waits when this starts. The page must show it above the section, with who
asks and the start of its arguments, without a console error; Approve must send the decision,
after which the list is gone from the page.
"""

import sys

from browser import chromium  # tests/privacy_center/browser.py
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BASE, SHOTS, TOOL, ASKED_BY = sys.argv[1:5]

driver = chromium()
# Hang guards only: the page looks again every 3 s.
wait = WebDriverWait(driver, 30)
try:
    driver.get(BASE)
    item = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#approvals [data-approval]"))
    box = driver.find_element(By.ID, "approvals")
    assert box.is_displayed(), "the waiting call is not shown"
    assert item.find_element(By.CSS_SELECTOR, "[data-tool]").text == TOOL, item.text
    assert item.find_element(By.CSS_SELECTOR, "[data-asked-by]").text == ASKED_BY, item.text
    assert "UTC" in item.find_element(By.CSS_SELECTOR, "[data-arguments]").text, item.text
    assert item.find_elements(By.CSS_SELECTOR, "time"), "no time shown: " + item.text
    driver.save_screenshot(f"{SHOTS}/approval-waiting.png")
    item.find_element(By.CSS_SELECTOR, "button[data-decision=approve]").click()
    wait.until(lambda d: not d.find_element(By.ID, "approvals").is_displayed())
    problems = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not problems, problems
    print("approved")
finally:
    driver.quit()
