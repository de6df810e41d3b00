"""The privacy center in cloud mode (tests/privacy_center.rs runs this).

Usage: cloud.py BASE_URL ADMIN_KEY SCREENSHOT_DIR

The page asks for a key before reading anything; the key is kept in the tab's
sessionStorage (never in the URL or a cookie) and sent as a header; the sections then load.
"""

import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BASE, KEY, SHOTS = sys.argv[1:4]
ORIGIN = BASE.rstrip("/")

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
            "--window-size=1280,900", "--no-first-run", "--disable-background-networking"]:
    options.add_argument(arg)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
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
    driver.get(ORIGIN + "/#vault")
    wait.until(lambda d: d.execute_script("return document.body.dataset.loaded") == "vault")
    assert driver.find_elements(By.CSS_SELECTOR, "#vault [data-figure=key_source]")
    driver.save_screenshot(f"{SHOTS}/cloud-vault.png")
    print("ok")
finally:
    driver.quit()
