"""Validation of request fields shared by the tasks. Raises errors that carry their status."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge_mm.errors import RequestTooLarge, Unprocessable


@dataclass(frozen=True)
class Limits:
    max_text_chars: int
    max_items: int


def texts_field(payload: Mapping[str, Any], limits: Limits, key: str = "inputs") -> list[str]:
    """``payload[key]`` as a non-empty list of non-blank strings (one string is a list of one)."""
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
        if len(text) > limits.max_text_chars:
            raise RequestTooLarge(f"'{key}'[{i}] has {len(text)} characters; the limit is {limits.max_text_chars}")
    return list(items)


def int_field(payload: Mapping[str, Any], key: str, default: int | None, lo: int, hi: int) -> int | None:
    value = payload.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Unprocessable(f"'{key}' must be an integer")
    if not lo <= value <= hi:
        raise Unprocessable(f"'{key}' must be between {lo} and {hi}, got {value}")
    return value


def float_field(payload: Mapping[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = payload.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unprocessable(f"'{key}' must be a number")
    if not lo <= value <= hi:
        raise Unprocessable(f"'{key}' must be between {lo:g} and {hi:g}, got {value}")
    return float(value)


def str_field(payload: Mapping[str, Any], key: str, default: str) -> str:
    value = payload.get(key, default)
    if not isinstance(value, str):
        raise Unprocessable(f"'{key}' must be a string")
    return value
