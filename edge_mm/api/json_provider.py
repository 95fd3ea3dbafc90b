"""JSON answers written by orjson: an embedding's 384 floats take about 20 us instead of 400 us
with the standard library (bench/results/request_profile.md).

Same output as Flask's provider for everything the API returns, except that non-ASCII text is
sent as UTF-8 instead of \\u escapes and NaN as null (both valid JSON); anything orjson refuses
(lone surrogates, integers over 64 bits) falls back to Flask's own encoder. Reading JSON stays
with Flask's provider (its errors and nesting limit are part of the error contract).
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Flask
from flask.json.provider import DefaultJSONProvider, _default
from werkzeug.sansio.response import Response

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class OrjsonProvider(DefaultJSONProvider):
    sort_keys = False

    def dump_bytes(self, obj: Any) -> bytes:
        """Compact JSON bytes (Flask's encoder where orjson refuses the value)."""
        options = _OPTIONS | (orjson.OPT_SORT_KEYS if self.sort_keys else 0)
        try:
            return orjson.dumps(obj, default=_default, option=options)
        except TypeError:  # orjson.JSONEncodeError
            return super().dumps(obj, separators=(",", ":")).encode()

    def response(self, *args: Any, **kwargs: Any) -> Response:
        if (self.compact is None and self._app.debug) or self.compact is False:
            return super().response(*args, **kwargs)  # indented, for people reading it
        obj = self._prepare_response_obj(args, kwargs)
        body = self.dump_bytes(obj) + b"\n"
        return self._app.response_class(body, mimetype=self.mimetype)  # type: ignore[arg-type]


def install(app: Flask) -> None:
    """Answer JSON through orjson (requirements/runtime.txt, lite.txt); keys in the order the code builds them."""
    app.json = OrjsonProvider(app)
    app.json.sort_keys = False
