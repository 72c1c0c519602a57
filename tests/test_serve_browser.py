"""The page at ``/`` in a real headless browser (Debian's chromium + chromedriver, driven by Selenium): it shows the
model's classes, an uploaded photo's decision, and the server's error message for a bad upload.

Needs ``chromium`` and ``/usr/bin/chromedriver`` (``tests/system/install_deps.sh`` installs them as root) and the
``selenium`` package (the ``test`` extra); skipped without them.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_client import image_bytes, predict, request

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    webdriver = None

pytestmark = pytest.mark.slow

CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = shutil.which("chromium")
if CHROMIUM is None or not CHROMEDRIVER.is_file():
    pytest.skip("needs Debian's chromium and /usr/bin/chromedriver: run tests/system/install_deps.sh as root",
                allow_module_level=True)
if webdriver is None:
    pytest.skip("needs selenium (pip install -e '.[test]'; chromium comes from tests/system/install_deps.sh)",
                allow_module_level=True)
pytest.importorskip("onnxruntime")
serving = pytest.importorskip("lit_vision.deploy.server")

#: a decision line of the page: "<file> → decision: <class> (<class> <p>, <class> <p>)"
DECISION = re.compile(r"^(?P<file>\S+) → decision: (?P<predicted>\S+) \((?P<probs>.*)\)$")


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1024,768"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console, for its JS errors
    # an explicit driver path: Selenium Manager would otherwise try to download one
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def upload(browser: webdriver.Chrome, path: Path, state: str) -> str:
    """Pick ``path`` in the page's file input; wait for the answer (``#result`` in ``state``) and return its text."""
    browser.find_element(By.ID, "file").send_keys(str(path))
    result = browser.find_element(By.ID, "result")
    WebDriverWait(browser, 30).until(
        lambda _: result.get_attribute("data-state") in ("decision", "error") and path.name in result.text)
    assert result.get_attribute("data-state") == state, result.text
    return result.text


def test_the_page_shows_classes_decisions_and_errors(server: str, browser: webdriver.Chrome, pets_root: Path,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, meta = request(server + "/metadata")
    browser.get(server + "/")
    model = browser.find_element(By.ID, "model")
    WebDriverWait(browser, 30).until(lambda _: model.text.startswith("model "))
    assert meta["model"] in model.text and all(c in model.text for c in meta["classes"]), model.text

    photo = min((pets_root / "test" / "dog").glob("*.png"))
    text = upload(browser, photo, "decision")
    match = DECISION.match(text)
    assert match and match["file"] == photo.name and match["predicted"] in meta["classes"], text
    # the page shows what /predict answers for the same file: the decision and every class's probability
    _, answer = predict(server, [("file", photo.name, photo.read_bytes())])
    expected = answer["results"][0]
    assert match["predicted"] == expected["predicted"]
    assert match["probs"] == ", ".join(f"{c} {p:.3f}" for c, p in expected["probabilities"].items())

    junk = tmp_path / "notes.txt"
    junk.write_text("hello, not an image")
    text = upload(browser, junk, "error")
    assert text.startswith("error: notes.txt: not a readable image"), text

    text = upload(browser, photo, "decision")  # the same file again, after the error
    assert DECISION.match(text)["predicted"] == expected["predicted"], text

    # an error of the whole request (413, no per-file results) is shown too
    monkeypatch.setattr(serving, "MAX_BODY_BYTES", 1000)
    big = tmp_path / "big.bmp"
    big.write_bytes(image_bytes((64, 64), fmt="BMP"))
    text = upload(browser, big, "error")
    assert re.fullmatch(r"error: big.bmp: request body is [\d,]+ bytes, over the 1,000-byte limit", text), text

    # no script error on the way (the browser logs every 4xx answer as a failed resource load: those are expected)
    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not [m for m in severe if "Failed to load resource" not in m], severe
