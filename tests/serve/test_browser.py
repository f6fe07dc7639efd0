"""The web page in a real headless Chromium (Debian's chromium + chromium-driver, via Selenium)."""

from __future__ import annotations

import shutil
import socket
import threading
import time

import pandas as pd
import pytest

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)


@pytest.fixture(scope="module")
def server(workdir):
    import uvicorn

    from shopml.serve.app import create_app
    from shopml.serve.settings import Settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        create_app(Settings(workdir=workdir)), host="127.0.0.1", port=port, log_level="warning"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 120
    while not srv.started:
        if time.time() > deadline or not thread.is_alive():
            pytest.fail("the server did not start")
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--window-size=1200,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_upload_photo_see_results_open_product(server, browser, workdir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(server + "/")
    wait.until(lambda d: d.find_element(By.ID, "ready").text == "ready")
    street = pd.read_parquet(workdir / "world" / "street.parquet")
    photo = workdir / "world" / street["image"].iloc[0]
    browser.find_element(By.ID, "search-file").send_keys(str(photo))
    browser.find_element(By.ID, "search-submit").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#search-results .card")) > 0)
    cards = browser.find_elements(By.CSS_SELECTOR, "#search-results .card")
    assert len(cards) == 12
    first_id = cards[0].get_attribute("data-product-id")
    cards[0].click()
    wait.until(ec.visibility_of_element_located((By.ID, "product")))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#similar-grid .card")) > 0)
    assert browser.find_element(By.ID, "product").get_attribute("data-product-id") == first_id
    similar = browser.find_elements(By.CSS_SELECTOR, "#similar-grid .card")
    assert first_id not in [c.get_attribute("data-product-id") for c in similar]
    wait.until(lambda d: "band" in d.find_element(By.ID, "forecast-status").text)
    browser.save_screenshot(str(workdir / "page.png"))


def test_bad_upload_shows_the_error(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not an image")
    browser.get(server + "/")
    browser.find_element(By.ID, "search-file").send_keys(str(bad))
    browser.find_element(By.ID, "search-submit").click()
    WebDriverWait(browser, 30).until(
        lambda d: "error" in d.find_element(By.ID, "search-status").get_attribute("class")
    )
    assert "undecodable" in browser.find_element(By.ID, "search-status").text
