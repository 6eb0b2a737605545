"""The /ui/ page in a real browser: Debian's chromium driven by Selenium through chromium-driver.

The service runs in this process on a loopback port; the tests pick an example bundle, run it, read
the card and the chart's point count from the page, paste a malformed Bundle and read the error
beside the input, and check from the browser's own network log that no request left the service's
origin. Screenshots and the page's weight are written to test-artifacts/ui/ (git-ignored).
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import PROJECT_ROOT

ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "ui"
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    not (BROWSER and DRIVER),
    reason="browser tests need Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver); "
           ".ci/run installs them")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra: pip install -e '.[test]'")

from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

WAIT_SECONDS = 60  # a generous ceiling for a busy two-core machine, not a performance bound
PAGE_WEIGHT_BUDGET = 1_500_000  # bytes on first load; the vendored Vega build is most of it


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    """The service on a free loopback port, with the CDS Hooks try-out on (a test sandbox)."""
    from werkzeug.serving import make_server

    from tests.support.cds_app import make_app

    folder = tmp_path_factory.mktemp("ui-browser")
    app = make_app({"CDS_FEEDBACK_DB": str(folder / "feedback.sqlite3"), "CDS_REQUIRE_JWT": False,
                    "UI_SANDBOX": True, "EVALUATION_TIME": "2026-11-15T09:00:00Z"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


def _driver(width: int, height: int):
    options = Options()
    options.binary_location = BROWSER
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-extensions", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", f"--window-size={width},{height}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=options)


@pytest.fixture
def browser():
    driver = _driver(1280, 1800)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _network(driver) -> list[dict]:
    """The DevTools network events the browser logged since the last read."""
    events = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"].startswith("Network."):
            events.append(message)
    return events


def _requested_urls(events: list[dict]) -> list[str]:
    return [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]


def _assert_same_origin(urls: list[str], origin: str) -> None:
    assert urls, "the network log recorded no request"
    foreign = [url for url in urls if not url.startswith(("data:", "blob:"))
               and "{0.scheme}://{0.netloc}".format(urlsplit(url)) != origin]
    assert foreign == [], f"requests left the service's origin: {foreign}"


def _open(driver, origin: str) -> None:
    driver.get(f"{origin}/ui/")
    WebDriverWait(driver, WAIT_SECONDS).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")


def _run_fixture(driver, name: str, mode: str) -> None:
    Select(driver.find_element(By.ID, "fixture")).select_by_value(name)
    WebDriverWait(driver, WAIT_SECONDS).until(
        lambda d: '"resourceType": "Bundle"' in d.find_element(By.ID, "bundle-text").get_attribute("value"))
    driver.find_element(By.CSS_SELECTOR, f"input[name=mode][value='{mode}']").click()
    driver.find_element(By.ID, "run").click()
    WebDriverWait(driver, WAIT_SECONDS).until(
        lambda d: d.find_element(By.ID, "chart").get_attribute("data-rendered") == "true"
        and d.find_element(By.ID, "run").is_enabled())


def test_the_metastatic_esrd_fixture_shows_its_card_and_its_trend(browser, origin):
    _open(browser, origin)
    weight = sum(e["params"].get("encodedDataLength", 0) for e in _network(browser)
                 if e["method"] == "Network.loadingFinished")
    (ARTIFACTS / "page-weight.txt").write_text(f"{weight} bytes transferred on first load of /ui/\n", encoding="utf-8")
    assert 0 < weight < PAGE_WEIGHT_BUDGET

    _run_fixture(browser, "04-metastatic-esrd.json", "patient-view")
    WebDriverWait(browser, WAIT_SECONDS).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#cards .card"))
    card = browser.find_element(By.CSS_SELECTOR, "#cards .card .summary").text
    assert "Metastatic calcinosis likely" in card and "Ca x P 82.1 mg2/dL2" in card
    # the indicator is a word and an icon, not only a colour
    assert browser.find_element(By.CSS_SELECTOR, "#cards .card .indicator").text.lower().endswith("critical")

    summary = browser.find_element(By.ID, "trend-summary")
    points = browser.find_elements(By.CSS_SELECTOR, "#chart svg g.mark-symbol.role-mark path")
    assert summary.get_attribute("data-point-count") == "5" and len(points) == 5
    assert "5 results plotted" in summary.text
    grades = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#risk tbody tr td:nth-child(2)")]
    assert grades[0] == "▲▲ high" or grades[0].endswith("high")

    product = points[2]  # the panels' order: calcium, phosphate, Ca x P, then the small multiples
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", product)
    ActionChains(browser).move_to_element(product).perform()
    WebDriverWait(browser, WAIT_SECONDS).until(lambda d: d.find_element(By.ID, "chart-tooltip").is_displayed())
    tip = browser.find_element(By.ID, "chart-tooltip").text
    assert "as reported" in tip and "used by the rules" in tip and "Ca x P" in tip and "82.08 mg2/dL2" in tip

    browser.save_screenshot(str(ARTIFACTS / "metastatic-esrd-hover-1280.png"))
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(ARTIFACTS / "metastatic-esrd-1280.png"))
    browser.execute_script("document.getElementById('trend').scrollIntoView()")
    browser.save_screenshot(str(ARTIFACTS / "metastatic-esrd-trend-1280.png"))
    _assert_same_origin(_requested_urls(_network(browser)), origin)


def test_a_malformed_bundle_shows_the_services_error_beside_the_input(browser, origin):
    _open(browser, origin)
    area = browser.find_element(By.ID, "bundle-text")
    area.clear()
    area.send_keys('{"resourceType": "Bundle", "type": "collection", "entry": [')
    browser.find_element(By.ID, "run").click()
    WebDriverWait(browser, WAIT_SECONDS).until(lambda d: d.find_element(By.ID, "input-error").is_displayed())
    error = browser.find_element(By.ID, "input-error").text
    assert "HTTP 400" in error and "body is not valid JSON" in error and "line 1 column" in error
    assert area.get_attribute("aria-invalid") == "true"
    assert "input-error" in area.get_attribute("aria-describedby")
    assert browser.find_element(By.ID, "trend-summary").get_attribute("data-point-count") == "0"
    browser.save_screenshot(str(ARTIFACTS / "malformed-bundle-1280.png"))
    _assert_same_origin(_requested_urls(_network(browser)), origin)


def test_an_input_issue_leads_to_its_line_and_the_page_fits_a_phone(origin):
    driver = _driver(390, 844)
    try:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        _open(driver, origin)
        _run_fixture(driver, "14-unknown-unit.json", "assess")
        button = WebDriverWait(driver, WAIT_SECONDS).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#issues button.line"))[0]
        driver.execute_script("arguments[0].scrollIntoView()", button)
        button.click()
        area = driver.find_element(By.ID, "bundle-text")
        selected = driver.execute_script(
            "const a = arguments[0]; return a.value.slice(a.selectionStart, a.selectionEnd);", area)
        # the issue is at Bundle.entry[2].resource.valueQuantity.code: that line is selected
        assert selected.strip().rstrip(",") == '"code": "mg/furlong"'
        assert driver.switch_to.active_element == area
        overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        driver.save_screenshot(str(ARTIFACTS / "unknown-unit-phone.png"))
        _assert_same_origin(_requested_urls(_network(driver)), origin)
    finally:
        driver.quit()
