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
    wait.until(ec.visibility_of_element_located((By.ID, "tab-product")))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#similar-grid .card")) > 0)
    assert browser.find_element(By.ID, "tab-product").get_attribute("data-product-id") == first_id
    assert browser.current_url.endswith(f"#/product/{first_id}")
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


def _wait_cards(browser, grid, timeout=60):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, timeout).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, f"#{grid} .card")) > 0
    )
    return browser.find_elements(By.CSS_SELECTOR, f"#{grid} .card")


def test_hash_routes_back_button_and_shared_links(server, browser, workdir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(server + "/#/catalog")
    first_page = [c.get_attribute("data-product-id") for c in _wait_cards(browser, "catalog-grid")]
    assert len(first_page) == 48  # a page of the catalog
    assert "page 1 of" in browser.find_element(By.ID, "catalog-page").text
    browser.find_element(By.ID, "catalog-next").click()
    wait.until(lambda d: "page 2 of" in d.find_element(By.ID, "catalog-page").text)
    assert browser.current_url.endswith("#/catalog?page=2")
    second = _wait_cards(browser, "catalog-grid")
    pid = second[0].get_attribute("data-product-id")
    assert pid not in first_page
    second[0].click()
    wait.until(lambda d: d.current_url.endswith(f"#/product/{pid}"))
    browser.back()  # back to the catalog page it came from, not to visual search
    wait.until(lambda d: "page 2 of" in d.find_element(By.ID, "catalog-page").text)
    assert browser.find_element(By.ID, "tab-catalog").is_displayed()
    browser.back()
    wait.until(lambda d: "page 1 of" in d.find_element(By.ID, "catalog-page").text)
    browser.get(server + f"/#/product/{pid}")  # a shared link opens the product
    wait.until(
        lambda d: d.find_element(By.ID, "tab-product").get_attribute("data-product-id") == pid
    )
    assert browser.find_element(By.ID, "tab-product").is_displayed()


def test_catalog_text_search(server, browser, workdir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    catalog = pd.read_parquet(workdir / "world" / "catalog.parquet")
    word = catalog["title"].iloc[0].split()[1].lower()  # a colour
    expected = int(catalog["title"].str.lower().str.contains(word).sum())
    browser.get(server + "/#/catalog")
    _wait_cards(browser, "catalog-grid")
    box = browser.find_element(By.ID, "catalog-q")
    box.clear()
    box.send_keys(word)
    browser.find_element(By.CSS_SELECTOR, "#catalog-form button").click()
    WebDriverWait(browser, 60).until(
        lambda d: f"matching “{word}”" in d.find_element(By.ID, "catalog-status").text
    )
    assert browser.current_url.endswith(f"#/catalog?q={word}")
    cards = _wait_cards(browser, "catalog-grid")
    assert len(cards) == min(48, expected) and expected < len(catalog)
    assert all(word in c.find_element(By.CLASS_NAME, "t").text.lower() for c in cards)


def test_forecast_chart_shows_past_sales_and_the_apis_numbers(server, browser, workdir):
    import json
    import urllib.request

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    pid = int(pd.read_parquet(workdir / "world" / "sales.parquet")["unique_id"].iloc[0])
    browser.get(server + f"/#/product/{pid}")
    WebDriverWait(browser, 90).until(
        lambda d: "actual sales" in d.find_element(By.ID, "forecast-status").text
    )
    rows = browser.execute_script(
        "return [...document.querySelectorAll('#forecast-table tbody tr')]"
        ".map(tr => [...tr.cells].map(td => td.textContent))"
    )
    request = urllib.request.Request(
        server + "/v1/forecast",
        data=json.dumps({"product_ids": [pid], "horizon": 28}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        api = json.load(response)["series"][0]["days"]
    assert [r[0] for r in rows] == [d["ds"] for d in api]
    for row, day in zip(rows, api, strict=True):  # the page draws the API's numbers
        assert [float(v) for v in row[1:]] == pytest.approx(
            [day[k] for k in ("mean", "q10", "q50", "q90")], abs=1e-4
        )
    # the canvas is drawn (not blank) and the sales before the forecast were fetched
    inked = browser.execute_script(
        "const c = document.getElementById('forecast-chart');"
        "const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++; return n;"
    )
    assert inked > 5000
    browser.save_screenshot(str(workdir / "product.png"))


def test_feed_defaults_to_an_active_user_and_says_why(server, browser, workdir):
    import json
    import urllib.request

    from selenium.webdriver.common.by import By

    with urllib.request.urlopen(server + "/v1/users?limit=1", timeout=30) as response:
        top = json.load(response)[0]
    browser.get(server + "/#/feed")
    items = _wait_cards(browser, "feed-grid")
    assert browser.find_element(By.ID, "feed-user").get_attribute("value") == str(top["user_id"])
    assert _wait_cards(browser, "feed-history")
    whys = [c.find_element(By.CLASS_NAME, "why") for c in items]
    assert all("because of" in w.text for w in whys)
    assert all(w.find_elements(By.TAG_NAME, "img") for w in whys)  # the history items behind it
    assert browser.execute_script(
        "return document.querySelector('link[rel=icon]').href.endsWith('/favicon.ico')"
    )
    browser.save_screenshot(str(workdir / "feed.png"))
