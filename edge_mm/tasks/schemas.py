"""Request models shared by the tasks (pydantic v2): declared once, validated with in ``parse``,
documented by ``/openapi.json``; and :class:`Prediction`, the box every DeepStack-dialect answer holds.

Types are strict (JSON ``"2"`` is not an integer, ``true`` is not a number); unknown fields are
ignored; an option sent as ``null`` means its default. Limits that come from settings at run
time (text length, item count) are checked after validation by :func:`check_texts` (413).
Form fields arrive parsed by :func:`~edge_mm.tasks.payload.form_options` (numbers, booleans and
JSON lists), so the same models take JSON bodies, forms and query strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema
from pydantic_core import PydanticCustomError

from edge_mm.errors import RequestTooLarge, Unprocessable

M = TypeVar("M", bound=BaseModel)


def nullable_options(schema: dict[str, Any]) -> None:
    """In the document, every optional field also takes ``null`` (the default)."""
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        if name not in required and not _allows_null(prop):
            schema["properties"][name] = {
                "anyOf": [{k: v for k, v in prop.items() if k != "default"}, {"type": "null"}]
            }
            if "default" in prop:
                schema["properties"][name]["default"] = prop["default"]


def _allows_null(prop: dict[str, Any]) -> bool:
    return prop.get("type") == "null" or any(p.get("type") == "null" for p in prop.get("anyOf", ()))


class Strict(BaseModel):
    """Base of every request model: strict types, unknown fields ignored, finite numbers."""

    model_config = ConfigDict(
        strict=True, extra="ignore", frozen=True, allow_inf_nan=False, json_schema_extra=nullable_options
    )


class ModelOptions(BaseModel):
    """Base of a model kind's serve-time ``options`` in settings (``[[models]]``), validated at start-up:
    strict types, unknown keys refused, finite numbers. Requests override them field by field."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class Options(Strict):
    """A request to one model, named by ``model``."""

    model: str | None = Field(None, description="a served model's name (GET /v1/models); default: the first")


def _unicode_text(value: str) -> str:
    """Lone surrogates (e.g. from JSON ``"\\ud800"``) are not text: no tokenizer can take them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("unicode", "is not valid Unicode text (it holds a lone surrogate)") from None
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "is empty")
    return value


def _one_is_a_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


UnicodeStr = Annotated[str, AfterValidator(_unicode_text)]
Text = Annotated[str, AfterValidator(_unicode_text), AfterValidator(_not_blank)]
_TEXT_SCHEMA = {"type": "string", "minLength": 1, "pattern": r"\S"}
Texts = Annotated[
    list[Text],
    BeforeValidator(_one_is_a_list),
    Field(min_length=1),
    WithJsonSchema(
        {
            "anyOf": [_TEXT_SCHEMA, {"type": "array", "items": _TEXT_SCHEMA, "minItems": 1}],
            "description": "a text or a non-empty list of texts",
        }
    ),
]
"""A non-empty list of non-blank texts; one string is a list of one."""


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f"'{part}'" if not out else f".{part}")
    return out


def _got(value: Any) -> str:
    if isinstance(value, dict | list) or value is None:
        return ""
    shown = repr(value)
    return f" (got {shown[:60] + '...' if len(shown) > 60 else shown})"


def describe(exc: ValidationError) -> str:
    """The first errors of a validation, each naming its field: ``'top_k': Input should be ... (got 0)``."""
    parts = []
    for err in exc.errors(include_url=False)[:3]:
        where = _where(err["loc"])
        got = "" if err["type"] == "missing" else _got(err.get("input"))
        parts.append(f"{where}: {err['msg']}{got}" if where else err["msg"])
    return "; ".join(parts)


def validate(model: type[M], fields: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> M:
    """``fields`` (``null`` dropped) over ``defaults`` (the model's options from settings) as ``model``;
    422 naming the field otherwise."""
    given = {k: v for k, v in fields.items() if v is not None}
    try:
        return model.model_validate({**(defaults or {}), **given})
    except ValidationError as exc:
        raise Unprocessable(describe(exc)) from None


def check_texts(texts: list[str], key: str, max_items: int, max_chars: int) -> list[str]:
    """413 when there are more than ``max_items`` texts or one is longer than ``max_chars``."""
    if len(texts) > max_items:
        raise RequestTooLarge(f"'{key}' has {len(texts)} items; the limit is {max_items}")
    for i, text in enumerate(texts):
        if len(text) > max_chars:
            raise RequestTooLarge(f"'{key}'[{i}] has {len(text)} characters; the limit is {max_chars}")
    return texts


class ImageInput(Strict):
    """Images as base64 in a JSON body (multipart uploads and raw bodies are described by the route)."""

    image: str | None = Field(None, description="one image, base64 (or a data: URL)")
    images: list[str] | None = Field(None, min_length=1, description="several images, base64")


class AudioInput(Strict):
    audio: str | None = Field(None, description="a WAV file, base64")


class VideoInput(Strict):
    video: str | None = Field(None, description="a video file (MP4, WebM, ...), base64")


class Prediction(BaseModel):
    """One box in DeepStack's and CodeProject.AI's answers: what, how sure, corners in pixels."""

    label: str
    confidence: float
    x_min: int
    y_min: int
    x_max: int
    y_max: int
