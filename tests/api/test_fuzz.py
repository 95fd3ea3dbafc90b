"""Property-based fuzzing with schemathesis against a live server, every operation of /openapi.json:
no 5xx, and every status, content type and body conforms to the document.

Bounded: EXAMPLES generated requests per operation (and per media type of its body), no shrinking,
derandomized, so a run takes the same few minutes every time. Text routes and the other surfaces
run against the tiny models; image, audio, video and DeepStack routes against the shipped models.
"""

from __future__ import annotations

import pytest

from tests.conftest import need_import
from tests.serving import running_server
from tests.vision_fixtures import *  # noqa: F403

EXAMPLES = 25  # per operation and body media type
MEDIA_ROUTES = ("/v1/vision/", "/v1/image-", "/v1/face-", "/v1/zero-shot-image-", "/v1/voice-", "/v1/video")


def fuzz(base: str, wanted) -> list[str]:  # type: ignore[no-untyped-def]
    """Run every operation ``wanted(path)`` selects; the failures as text (empty: all passed)."""
    schemathesis = need_import("schemathesis", "schemathesis is not installed: pip install -r requirements/dev.txt")
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    def no_server_error(ctx, response, case):  # type: ignore[no-untyped-def]
        """5xx fails, except 501 where a route's model is not configured (DeepStack detection)."""
        if response.status_code == 501 and "501" in case.operation.definition.raw["responses"]:
            return None
        return not_a_server_error(ctx, response, case)

    checks = [no_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    schema = schemathesis.openapi.from_url(base + "/openapi.json")
    failures: list[str] = []
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if not wanted(operation.path):
            continue
        media_types = [b.media_type for b in operation.body] or [None]
        for media_type in media_types:
            ran += 1

            @settings(
                max_examples=EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(media_type=media_type))
            def call(case) -> None:  # type: ignore[no-untyped-def]
                case.call_and_validate(base_url=base, checks=checks, timeout=60)

            try:
                call()
            except (Exception, BaseExceptionGroup) as exc:  # every failure is collected and reported together
                failures.append(f"{operation.method.upper()} {operation.path} [{media_type}]: {exc}"[:3000])
    assert ran, "no operation selected"
    return failures


def is_media(path: str) -> bool:
    return path.startswith(MEDIA_ROUTES)


@pytest.fixture(scope="module")
def tiny_server(tiny_config):
    with running_server(tiny_config) as base:
        yield base


@pytest.fixture(scope="module")
def vision_server(vision_config):
    with running_server(vision_config) as base:
        yield base


def test_fuzz_text_routes_and_other_surfaces(tiny_server):
    failures = fuzz(tiny_server, lambda path: not is_media(path))
    assert not failures, "\n\n".join(failures)


@pytest.mark.real_models
def test_fuzz_media_and_deepstack_routes(vision_server):
    failures = fuzz(vision_server, is_media)
    assert not failures, "\n\n".join(failures)
