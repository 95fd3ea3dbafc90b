"""GET /: the playground page, served from the package, driven in Debian's headless chromium
(selenium + chromedriver) against a live server with the default models."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from edge_mm.config import load_settings
from edge_mm.runtime.registry import Registry
from tests.conftest import SPEECH_WAV, missing, need, need_import
from tests.serving import running_server
from tests.vision_fixtures import *  # noqa: F403

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags chromium's own connections are refused here (offline).
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,2600",
)
WAIT_S = 180


def _page_client():  # type: ignore[no-untyped-def]
    from edge_mm.api import create_app

    app = create_app(load_settings(None, env={}), Registry())
    app.config["TESTING"] = True
    return app.test_client()


@pytest.mark.parametrize(
    ("path", "mimetype"),
    [("/", "text/html"), ("/playground/playground.js", "text/javascript"), ("/playground/playground.css", "text/css")],
)
def test_page_and_assets_come_from_the_package(path, mimetype):
    r = _page_client().get(path)
    assert r.status_code == 200
    assert r.mimetype == mimetype
    assert r.data


def test_page_loads_nothing_from_elsewhere():
    """No CDN: every src/href and every fetch in the page and its script is a path on this server."""
    c = _page_client()
    html = c.get("/").get_data(as_text=True)
    script = c.get("/playground/playground.js").get_data(as_text=True)
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs, html
    assert all(ref.startswith("/") and not ref.startswith("//") for ref in refs), refs
    assert not re.search(r"https?://", script)
    assert "/v1/models" in script  # what is served comes from the public model list


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    driver_path = shutil.which("chromedriver")
    need(
        Path(CHROMIUM).is_file() and driver_path,
        "chromium and chromium-driver are not installed: run `make system-deps` (scripts/system_deps.sh)",
    )
    webdriver = need_import("selenium.webdriver", "selenium is not installed (requirements/dev.txt)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    try:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    except Exception as exc:  # a browser that cannot start is a missing test input, like a missing one
        missing(f"chromium did not start under chromedriver: {exc!r}")
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_playground_in_a_browser(browser, vision_config, photos, videos, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    shot = tmp_path / "playground.png"

    def attr(element_id: str, name: str) -> str:
        return browser.find_element(By.ID, element_id).get_attribute(name) or ""

    def wait_for(what: str, condition) -> None:  # type: ignore[no-untyped-def]
        try:
            WebDriverWait(browser, WAIT_S, poll_frequency=0.2).until(lambda _d: condition())
        except Exception as exc:
            browser.save_screenshot(str(shot))
            errors = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".error") if e.text]
            raise AssertionError(f"{what}: {exc!r}; panel errors {errors}; screenshot {shot}") from exc

    with running_server(vision_config) as base:
        browser.get(base + "/")
        wait_for("the model list", lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-models"))
        served = int(browser.find_element(By.TAG_NAME, "body").get_attribute("data-models") or 0)
        assert served >= 5, f"{served} models listed; screenshot {shot}"

        # An image: labels, and the astronaut's face drawn as a box with landmarks.
        browser.find_element(By.ID, "image-input").send_keys(str(photos / "astronaut.png"))
        wait_for("the image results", lambda: attr("face-canvas", "data-state") in ("done", "error"))
        faces = attr("face-canvas", "data-faces")
        labels = browser.find_element(By.ID, "image-labels").text

        # Two sentences: their cosine similarity.
        for element_id, text in (("sentence-a", "A man is playing a guitar."), ("sentence-b", "Someone plays music.")):
            box = browser.find_element(By.ID, element_id)
            box.clear()
            box.send_keys(text)
        browser.find_element(By.ID, "similarity-run").click()
        wait_for("the similarity score", lambda: attr("similarity-score", "data-score"))
        score = float(attr("similarity-score", "data-score"))

        browser.find_element(By.ID, "zero-shot-run").click()
        wait_for("zero-shot scores", lambda: browser.find_element(By.ID, "zero-shot-result").text)
        zero_shot = browser.find_element(By.ID, "zero-shot-result").text

        browser.find_element(By.ID, "audio-input").send_keys(str(SPEECH_WAV))
        wait_for("speech segments", lambda: attr("audio-timeline", "data-segments"))
        segments = int(attr("audio-timeline", "data-segments"))

        browser.find_element(By.ID, "video-input").send_keys(str(videos / "bigbuckbunny.mp4"))
        wait_for("video frames", lambda: attr("video-frames", "data-frames"))
        frames = int(attr("video-frames", "data-frames"))

        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(str(shot))
        errors = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".error") if e.text]

    context = f"screenshot {shot}"
    assert not errors, f"panel errors {errors}; {context}"
    assert faces == "1", f"data-faces={faces!r} (the astronaut: one face); {context}"
    assert labels.strip(), f"no image labels; {context}"
    assert 0.3 < score <= 1.0, f"similarity {score}; {context}"
    assert zero_shot.splitlines()[0].startswith("sports"), f"zero-shot {zero_shot!r}; {context}"
    assert segments >= 1, f"{segments} speech segments; {context}"
    assert frames >= 1, f"{frames} video frames; {context}"
    assert shot.stat().st_size > 10_000, context
