"""The playground page in headless chromium, as the browser tests drive it: find an element by id,
read an attribute, wait for a condition (a screenshot and the panels' errors when it never holds)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

WAIT_S = 180


class Page:
    def __init__(self, browser: Any, shot: Path) -> None:
        self.browser = browser
        self.shot = shot

    def find(self, element_id: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.browser.find_element(By.ID, element_id)

    def attr(self, element_id: str, name: str) -> str:
        return self.find(element_id).get_attribute(name) or ""

    def wait_for(self, what: str, condition: Callable[[], Any]) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            WebDriverWait(self.browser, WAIT_S, poll_frequency=0.2).until(lambda _d: condition())
        except Exception as exc:
            self.browser.save_screenshot(str(self.shot))
            errors = [e.text for e in self.browser.find_elements(By.CSS_SELECTOR, ".error") if e.text]
            raise AssertionError(f"{what}: {exc!r}; panel errors {errors}; screenshot {self.shot}") from exc
