"""The playground's Streams panel in headless chromium against a live server (MTCNN only) with an API key and a
file stream of the committed clip: the stream listed with its status, its latest annotated frame shown, a face
event read from the events (sent with the key), then a stream added through the form and removed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.page import Page
from tests.api.test_playground import browser  # noqa: F401 (a fixture)
from tests.serving import running_server
from tests.streams.conftest import CLIP, mtcnn_config, mtcnn_settings_text  # noqa: F401 (a fixture)

KEY = "playground-streams-key"


@pytest.fixture
def streams_config(mtcnn_config: Path, tmp_path: Path) -> Path:  # noqa: F811
    """The MTCNN settings (already built) with a ``[[streams]]`` entry: the clip, with a user and password in its
    URL (a file source ignores them; the panel must not show them)."""
    stream = (
        f'\n[[streams]]\nid = "lobby"\nurl = "file://viewer:hunter2@{CLIP}"\nfps = 5\nmin_frames = 2\n'
        'end_after_s = 1.0\ntasks = ["face-detection"]\n'
    )
    path = tmp_path / "settings.toml"
    path.write_text(mtcnn_settings_text(tmp_path, stream))
    return path


def test_streams_panel_in_a_browser(browser, streams_config, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    shot = tmp_path / "playground-streams.png"

    page = Page(browser, shot)
    find, attr, wait_for = page.find, page.attr, page.wait_for

    # the table is drawn again every 2 s: read it in one script call (no element goes stale meanwhile)
    def rows() -> list[str]:
        script = "return [...document.querySelectorAll('#streams-table tbody tr')].map((r) => r.dataset.stream)"
        return list(browser.execute_script(script))

    def cells(stream_id: str) -> list[str]:
        script = (
            "const r = document.querySelector(`#streams-table tr[data-stream='${arguments[0]}']`);"
            "return r ? [...r.querySelectorAll('td')].map((c) => c.textContent) : [];"
        )
        return list(browser.execute_script(script, stream_id))

    def type_into(element_id: str, text: str) -> None:
        box = find(element_id)
        box.clear()
        box.send_keys(text)

    with running_server(streams_config, ("EDGE_MM_SERVER_API_KEYS", KEY)) as base:
        browser.get(base + "/")
        type_into("api-key", KEY)
        find("api-key").send_keys(Keys.TAB)  # the change event: the page uses the key from now on

        wait_for("the stream listed", lambda: rows() == ["lobby"])
        lobby = cells("lobby")
        assert lobby[0] == "lobby"
        assert "hunter2" not in "".join(lobby)  # the URL as the API answers it, without its credentials
        assert "***@" in lobby[1]

        wait_for("the latest annotated frame", lambda: attr("stream-view", "data-loaded") == "true")
        width = browser.execute_script("return document.getElementById('stream-view').naturalWidth")
        assert width == 320  # the clip's frames are 320 px wide
        assert attr("stream-view", "data-stream") == "lobby"

        # the clip's face enters at about 2.5 s: a start event in the list
        wait_for(
            "a face event",
            lambda: any(
                li.get_attribute("data-label") == "face"
                for li in browser.find_elements(By.CSS_SELECTOR, "#stream-events li[data-type='start']")
            ),
        )
        wait_for("frames counted", lambda: int(cells("lobby")[5].split(" / ")[0]) > 0)
        assert cells("lobby")[3] == "streaming"

        # add a stream through the form, then remove it
        type_into("stream-id", "porch")
        type_into("stream-url", str(CLIP))
        type_into("stream-tasks", "face-detection")
        type_into("stream-fps", "1")
        find("stream-add-run").click()
        wait_for("the added stream listed", lambda: rows() == ["lobby", "porch"])
        assert find("stream-watched").text == "of porch"  # the new stream is watched
        wait_for("the added stream's frame", lambda: attr("stream-view", "data-stream") == "porch")
        browser.execute_script(
            "document.querySelector('#streams-table tr[data-stream=\"porch\"] .stream-remove').click()"
        )
        wait_for("the removed stream gone", lambda: rows() == ["lobby"])
        wait_for("the first stream watched again", lambda: find("stream-watched").text == "of lobby")
        assert not [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#streams-panel > .error") if e.text]
