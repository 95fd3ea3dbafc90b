"""Validation of request fields shared by the tasks. Raises errors that carry their status.

An option sent as JSON ``null`` means "the default", as if it were left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge_mm.errors import RequestTooLarge, Unprocessable
from edge_mm.tasks.payload import Limits


def texts_field(
    payload: Mapping[str, Any], limits: Limits, key: str = "inputs", max_chars: int | None = None
) -> list[str]:
    """``payload[key]`` as a non-empty list of non-blank strings (one string is a list of one), each at
    most ``max_chars`` (default: ``max_text_chars``) long."""
    max_chars = limits.max_text_chars if max_chars is None else max_chars
    if key not in payload:
        raise Unprocessable(f"'{key}' is required: a string or a list of strings")
    value = payload[key]
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise Unprocessable(f"'{key}' must be a string or a list of strings, not {type(value).__name__}")
    if not items:
        raise Unprocessable(f"'{key}' is an empty list")
    if len(items) > limits.max_items:
        raise RequestTooLarge(f"'{key}' has {len(items)} items; the limit is {limits.max_items}")
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise Unprocessable(f"'{key}'[{i}] must be a string, not {type(text).__name__}")
        if not text.strip():
            raise Unprocessable(f"'{key}'[{i}] is empty")
        _check_unicode(text, f"'{key}'[{i}]")
        if len(text) > max_chars:
            raise RequestTooLarge(f"'{key}'[{i}] has {len(text)} characters; the limit is {max_chars}")
    return list(items)


def _check_unicode(text: str, what: str) -> None:
    """Lone surrogates (e.g. from JSON ``"\\ud800"``) are not text: no tokenizer can take them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Unprocessable(f"{what} is not valid Unicode text (it holds a lone surrogate)") from None


def with_defaults(fields: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The request's options over the model's defaults from settings (``null`` keeps the default)."""
    return {**defaults, **{k: v for k, v in fields.items() if v is not None}}


def _value(payload: Mapping[str, Any], key: str, default: Any) -> Any:
    value = payload.get(key)
    return default if value is None else value


def int_field(payload: Mapping[str, Any], key: str, default: int | None, lo: int, hi: int) -> int | None:
    value = _value(payload, key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Unprocessable(f"'{key}' must be an integer")
    if not lo <= value <= hi:
        raise Unprocessable(f"'{key}' must be between {lo} and {hi}, got {value}")
    return value


def float_field(payload: Mapping[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = _value(payload, key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unprocessable(f"'{key}' must be a number")
    if not lo <= value <= hi:
        raise Unprocessable(f"'{key}' must be between {lo:g} and {hi:g}, got {value}")
    return float(value)


def str_field(payload: Mapping[str, Any], key: str, default: str) -> str:
    value = _value(payload, key, default)
    if not isinstance(value, str):
        raise Unprocessable(f"'{key}' must be a string")
    _check_unicode(value, f"'{key}'")
    return value
