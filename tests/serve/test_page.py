"""The web page end to end: a real server on loopback, headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by Selenium types a text, clicks Classify and reads the label and the bars;
pastes a batch (one text per line) and reads the results table; uploads a file and reads the CSV download.

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


def test_an_empty_text_asks_for_one_and_clears_the_last_result(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _, _ = server
    browser.get(url + "/")
    wait = WebDriverWait(browser, 20)
    browser.find_element(By.ID, "text").send_keys("awful food")
    browser.find_element(By.ID, "classify").click()
    wait.until(lambda d: d.find_element(By.ID, "result").is_displayed())
    browser.find_element(By.ID, "text").clear()
    browser.find_element(By.ID, "classify").click()
    wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert browser.find_element(By.ID, "error").text == "Type a text first."
    assert not browser.find_element(By.ID, "result").is_displayed()  # the previous answer is gone
    assert not browser.find_element(By.ID, "table-section").is_displayed()


def _table(browser):
    from selenium.webdriver.common.by import By

    return [(r.find_element(By.CLASS_NAME, "t").text, r.get_attribute("data-label"),
             r.find_element(By.CLASS_NAME, "p").text)
            for r in browser.find_elements(By.CSS_SELECTOR, "#table tbody tr")]


def _download(browser) -> str:
    """The text behind the CSV download link (a blob: URL made by the page)."""
    from selenium.webdriver.common.by import By

    link = browser.find_element(By.ID, "download")
    assert link.is_displayed() and link.get_attribute("download") == "predictions.csv"
    return browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then((r) => r.text()).then(done, (e) => done('ERROR ' + e));",
        link.get_attribute("href"))


def test_a_pasted_batch_is_classified_line_by_line_into_a_table(browser, server):
    """One text per line, more lines than one request may hold (64): every line gets its row, in order,
    with the label the model gives it; the notes on truncation and unsure answers are there."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, model, backend = server
    browser.get(url + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: "128 tokens" in d.find_element(By.ID, "limits-note").text
               or "tokens of each text" in d.find_element(By.ID, "limits-note").text)
    note = browser.find_element(By.ID, "limits-note").text
    assert f"first {model.spec.max_length} tokens" in note and "5,000 characters" in note and "unsure" in note
    texts = ["I love it .", "I hate it .", "the movie was really good", "awful food"] * 17 + ["x" * 6000]
    box = browser.find_element(By.ID, "text")
    browser.execute_script("arguments[0].value = arguments[1];", box, "\n".join(texts) + "\n\n")
    browser.find_element(By.ID, "classify").click()
    wait.until(lambda d: len(_table(d)) == len(texts) and d.find_element(By.ID, "summary").text)
    rows = _table(browser)
    sent = [t[:5000] for t in texts]
    assert [r[0] for r in rows] == sent
    assert [r[1] for r in rows] == model.predict(sent)
    probs = model.predict_proba(sent)
    assert [r[2] for r in rows] == [f"{100 * p.max():.1f}%" for p in probs]
    summary = browser.find_element(By.ID, "summary").text
    assert summary.startswith(f"{len(texts)} texts:") and "1 cut to 5,000 characters" in summary
    assert not browser.find_element(By.ID, "result").is_displayed()  # the card is for a single text
    unsure = browser.find_elements(By.CSS_SELECTOR, "#table tbody tr.unsure")
    assert len(unsure) == sum(p.max() < 0.6 for p in probs)
    csv_text = _download(browser)
    assert csv_text.splitlines()[0] == "text,label,prob_negative,prob_positive"
    assert len(csv_text.splitlines()) == len(texts) + 1
    browser.execute_script("window.scrollTo(0, 0);")
    _screenshot(browser, f"page-{backend}-batch.png")


def test_an_uploaded_file_is_classified_and_downloadable(browser, server, tmp_path):
    import csv
    import io

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, model, _ = server
    browser.get(url + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.find_element(By.ID, "model-line").text)
    path = tmp_path / "reviews.csv"
    path.write_text('id,text,stars\n1,"the movie was really good",5\n2,"awful food, sadly",1\n3,,3\n'
                    '4,"so boring , very boring",2\n')
    browser.find_element(By.ID, "text").send_keys("stale text from before")
    browser.find_element(By.ID, "file").send_keys(str(path))
    wait.until(lambda d: len(_table(d)) == 4 and d.find_element(By.ID, "download").is_displayed())
    rows = _table(browser)
    texts = ["the movie was really good", "awful food, sadly", "", "so boring , very boring"]
    assert [r[0] for r in rows] == texts
    labels = model.predict([t for t in texts if t])
    assert [r[1] for r in rows] == [labels[0], labels[1], "", labels[2]]
    out = list(csv.DictReader(io.StringIO(_download(browser))))
    assert [(o["id"], o["stars"], o["label"]) for o in out] == [
        ("1", "5", labels[0]), ("2", "1", labels[1]), ("3", "3", ""), ("4", "2", labels[2])]
    assert list(out[0]) == ["id", "text", "stars", "label", "prob_negative", "prob_positive"]
    _screenshot(browser, "page-file.png")

    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\nx,y\n")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert "bad.csv: no 'text' column (columns: a, b)" in browser.find_element(By.ID, "error").text
    assert not _table(browser)  # the previous file's results are cleared


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
