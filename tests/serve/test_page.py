"""The web page end to end: a real server on loopback, headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by Selenium types a text, clicks Classify and reads the label and the bars.

Skipped where Chromium is missing, except under CI (``CI`` set), where ``scripts/setup.sh`` installs it.
Set ``UNIGEN_SCREENSHOTS=DIR`` to keep screenshots of the page.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from capabilities import missing

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER and importlib.util.find_spec("selenium")):
        message = "the page test needs chromium, chromium-driver and selenium (bash scripts/setup.sh)"
        missing(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=900,860", "--no-first-run", "--disable-extensions",
                # no host but loopback resolves: a page that fetched anything from the internet would break
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", params=["pytorch", "onnx"])
def server(request, folders):
    """``(base url, model)``: uvicorn serving the model in a thread, stopped after the module."""
    import uvicorn

    from unigen.serve.app import create_app

    model, paths = folders
    port = _free_port()
    config = uvicorn.Config(create_app(paths[request.param]), host="127.0.0.1", port=port,
                            log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", model, request.param
    srv.should_exit = True
    thread.join(timeout=10)


def _screenshot(driver, name: str) -> None:
    folder = os.environ.get("UNIGEN_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / name))


def test_type_a_text_and_read_the_result(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, model, backend = server
    browser.get(url + "/")
    wait = WebDriverWait(browser, 20)
    wait.until(lambda d: d.find_element(By.ID, "model-line").text)  # /model answered
    assert backend in browser.find_element(By.ID, "model-line").text
    assert not browser.find_element(By.ID, "result").is_displayed()

    text = "the movie was really good"
    browser.find_element(By.ID, "text").send_keys(text)
    browser.find_element(By.ID, "classify").click()
    wait.until(lambda d: d.find_element(By.ID, "result").is_displayed())
    label = browser.find_element(By.ID, "label").text
    expected = model.predict_proba(text)
    assert label == model.labels[int(expected.argmax())] == "positive"
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
    assert [b.get_attribute("data-label") for b in bars] == list(model.labels)
    shown = [float(b.find_element(By.CLASS_NAME, "value").text.rstrip("%")) for b in bars]
    assert shown == pytest.approx([100 * p for p in expected], abs=0.06)  # one decimal
    widths = [b.find_element(By.CLASS_NAME, "fill").size["width"] for b in bars]
    assert widths[1] > widths[0]  # the positive bar is the longer one
    _screenshot(browser, f"page-{backend}-typed.png")

    # an example button fills the box and classifies it
    examples = browser.find_elements(By.CSS_SELECTOR, "#examples button")
    assert len(examples) >= 3
    examples[1].click()  # the battery complaint
    wait.until(lambda d: d.find_element(By.ID, "text").get_attribute("value") != text)
    chosen = browser.find_element(By.ID, "text").get_attribute("value")
    wait.until(lambda d: d.find_element(By.ID, "label").text == model.predict(chosen))
    _screenshot(browser, f"page-{backend}-example.png")


def test_an_empty_text_asks_for_one(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _, _ = server
    browser.get(url + "/")
    browser.find_element(By.ID, "classify").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert browser.find_element(By.ID, "error").text == "Type a text first."


def test_the_api_docs_render_offline(browser, server):
    """/docs (Swagger UI) and /redoc (ReDoc) render the operations from the server's own files, with every
    other host unresolvable."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _, backend = server
    browser.get(url + "/docs")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")) >= 3)
    paths = {e.text.strip() for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/predict", "/health", "/model"} <= paths
    assert "UniGen sentiment classifier" in browser.find_element(By.CSS_SELECTOR, ".info .title").text
    _screenshot(browser, f"docs-{backend}.png")
    browser.get(url + "/redoc")
    wait.until(lambda d: "/predict" in d.find_element(By.TAG_NAME, "body").text)
    _screenshot(browser, f"redoc-{backend}.png")
