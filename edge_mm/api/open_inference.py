"""The Open Inference Protocol (KServe v2 / Triton HTTP) over the task table.

``POST /v2/models/{name}/infer`` turns the request's input tensors into the same
:class:`~edge_mm.tasks.payload.Payload` a ``/v1`` route builds, lets the model kind's task
parse and run it, and turns the task's JSON body into output tensors (the contracts in
``edge_mm/tasks/tensor_contracts.py``, shown by ``GET /v2/models/{name}``). Request ``parameters`` are the
task's options (``top_k``, ``min_face_size``, ...). JSON tensors and the binary tensor
data extension (``Inference-Header-Content-Length``) both work, in and out. Errors are
the protocol's ``{"error": "..."}`` with edge-mm's statuses (400 for a wrong datatype,
shape or tensor name).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
from flask import Blueprint, Response, current_app, g, jsonify, request

import edge_mm
from edge_mm.api import errors
from edge_mm.api.context import limits, registry, request_deadline
from edge_mm.errors import BadInput, NotFound
from edge_mm.runtime.model_calls import Models
from edge_mm.runtime.registry import Served
from edge_mm.tasks.payload import Payload, Upload
from edge_mm.tasks.task import Task
from edge_mm.tasks.tensor_contracts import CONTRACTS, Contract, Input, TensorSpec

NAME = "open_inference"
HEADER_LENGTH = "Inference-Header-Content-Length"
# Request parameters that steer the protocol, not the task; and payload fields only tensors fill.
PROTOCOL_PARAMETERS = {"binary_data_output", "sequence_id", "sequence_start", "sequence_end", "priority", "timeout"}
INPUT_FIELDS = {"model", "inputs", "input", "image", "images", "audio", "labels"}

# --- the tensor codec: JSON data and the binary tensor data extension ---


def _split_bytes(raw: bytes, what: str) -> list[bytes]:
    """A binary BYTES tensor: each element as a 4-byte little-endian length, then its bytes."""
    items, at = [], 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise BadInput(f"{what}: binary BYTES data ends inside an element's length")
        (n,) = struct.unpack_from("<I", raw, at)
        at += 4
        if at + n > len(raw):
            raise BadInput(f"{what}: binary BYTES element of {n} bytes runs past the data")
        items.append(raw[at : at + n])
        at += n
    return items


def _join_bytes(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def _flatten(data: Any) -> Iterator[Any]:
    if isinstance(data, list):
        for item in data:
            yield from _flatten(item)
    else:
        yield data


def _read_body() -> tuple[dict[str, Any], bytes]:
    """(the JSON header, the binary data after it)."""
    raw = request.get_data(cache=False)
    length = request.headers.get(HEADER_LENGTH)
    if length is not None:
        if not length.isdigit() or int(length) > len(raw):
            raise BadInput(f"{HEADER_LENGTH} must be the JSON header's length in bytes, at most the body's {len(raw)}")
        raw, binary = raw[: int(length)], raw[int(length) :]
    else:
        binary = b""
    try:
        header = json.loads(raw)
    except RecursionError:
        raise BadInput("request body is nested too deeply") from None
    except ValueError:
        raise BadInput("request body is not valid JSON" if raw else "request body is empty") from None
    if not isinstance(header, dict):
        raise BadInput(f"the inference request must be a JSON object, not {type(header).__name__}")
    return header, binary


def _tensor_header(tensor: Any, i: int) -> tuple[str, str, list[int], dict[str, Any]]:
    if not isinstance(tensor, dict):
        raise BadInput(f"inputs[{i}] must be an object with name, datatype, shape and data")
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    params = tensor.get("parameters") or {}
    if not isinstance(name, str) or not isinstance(datatype, str):
        raise BadInput(f"inputs[{i}]: 'name' and 'datatype' must be strings")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise BadInput(f"input {name!r}: 'shape' must be a list of non-negative integers")
    if not isinstance(params, dict):
        raise BadInput(f"input {name!r}: 'parameters' must be an object")
    return name, datatype, shape, params


def _read_inputs(header: dict[str, Any], binary: bytes) -> dict[str, tuple[str, list[int], list[Any], bool]]:
    """Input name -> (datatype, shape, elements, sent as binary); elements are bytes (binary) or JSON values."""
    tensors = header.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise BadInput("'inputs' must be a non-empty list of tensors")
    out: dict[str, tuple[str, list[int], list[Any], bool]] = {}
    at = 0
    for i, tensor in enumerate(tensors):
        name, datatype, shape, params = _tensor_header(tensor, i)
        if name in out:
            raise BadInput(f"input {name!r} is sent twice")
        size = params.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or at + size > len(binary):
                raise BadInput(f"input {name!r}: binary_data_size {size!r} does not fit the binary data sent")
            chunk, at = binary[at : at + size], at + size
            elements = _split_bytes(chunk, f"input {name!r}") if datatype == "BYTES" else [chunk]
            out[name] = (datatype, shape, elements, True)
        elif "data" in tensor:
            try:
                out[name] = (datatype, shape, list(_flatten(tensor["data"])), False)
            except RecursionError:
                raise BadInput(f"input {name!r}: 'data' is nested too deeply") from None
        else:
            raise BadInput(f"input {name!r} has neither 'data' nor parameters.binary_data_size")
    if at != len(binary):
        raise BadInput(f"{len(binary) - at} bytes of binary data follow the tensors that were declared")
    return out


def _check_input(spec: Input, datatype: str, shape: list[int], elements: list[Any], binary: bool) -> list[Any]:
    """The input's elements, after its datatype and shape are checked against the contract."""
    name = spec.spec.name
    if datatype != "BYTES":
        raise BadInput(f"input {name!r} must be BYTES ({spec.spec.help}), not {datatype}")
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise BadInput(f"input {name!r} must have shape [n] or [n, 1], not {shape}")
    if spec.one and shape[0] != 1:
        raise BadInput(f"input {name!r} must hold exactly one element (shape [1]), not {shape}")
    if math.prod(shape) != len(elements):
        raise BadInput(f"input {name!r}: shape {shape} holds {math.prod(shape)} elements but {len(elements)} were sent")
    if not binary and not all(isinstance(e, str) for e in elements):
        raise BadInput(f"input {name!r}: BYTES elements in JSON must be strings")
    return elements


def build_payload(contract: Contract, name: str, header: dict[str, Any], binary: bytes) -> Payload:
    """The request as the task's Payload: tensors fill the input fields, parameters are the options."""
    params = header.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadInput("'parameters' must be an object")
    fields: dict[str, Any] = {k: v for k, v in params.items() if k not in PROTOCOL_PARAMETERS and k not in INPUT_FIELDS}
    uploads: list[Upload] = []
    sent = _read_inputs(header, binary)
    expected = {i.spec.name: i for i in contract.inputs}
    unknown = sorted(set(sent) - set(expected))
    if unknown:
        raise BadInput(f"unknown input {unknown[0]!r}; model {name!r} takes {sorted(expected)}")
    for spec in contract.inputs:
        if spec.spec.name not in sent:
            raise BadInput(f"input {spec.spec.name!r} is required ({spec.spec.help})")
        datatype, shape, elements, is_binary = sent[spec.spec.name]
        items = _check_input(spec, datatype, shape, elements, is_binary)
        if spec.files and is_binary:
            uploads.extend(Upload(spec.field, b) for b in items)
        elif spec.files:
            fields[spec.field] = items[0] if spec.one else items
        else:
            fields[spec.field] = [_utf8(b, spec.spec.name) for b in items] if is_binary else items
    return Payload({**fields, **dict(contract.fixed), "model": name}, tuple(uploads))


def _utf8(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"input {name!r}: an element is not UTF-8 text") from None


def _requested(header: dict[str, Any], contract: Contract) -> list[tuple[TensorSpec, bool]]:
    """The outputs to send, each with whether it goes as binary data."""
    params = header.get("parameters") or {}
    all_binary = bool(params.get("binary_data_output", False))
    asked = header.get("outputs")
    specs = {o.name: o for o in contract.outputs}
    if asked is None:
        return [(o, all_binary) for o in contract.outputs]
    if not isinstance(asked, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in asked):
        raise BadInput("'outputs' must be a list of objects with a 'name'")
    out = []
    for o in asked:
        if o["name"] not in specs:
            raise BadInput(f"unknown output {o['name']!r}; this model gives {sorted(specs)}")
        out.append((specs[o["name"]], bool((o.get("parameters") or {}).get("binary_data", all_binary))))
    return out


def _encode(spec: TensorSpec, array: np.ndarray, binary: bool) -> tuple[dict[str, Any], bytes]:
    tensor: dict[str, Any] = {"name": spec.name, "datatype": spec.datatype, "shape": list(array.shape)}
    if spec.datatype == "BYTES":
        items = [str(x) for x in array.flatten()]
        if binary:
            raw = _join_bytes([x.encode() for x in items])
            return tensor | {"parameters": {"binary_data_size": len(raw)}}, raw
        return tensor | {"data": items}, b""
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    if binary:
        raw = little.tobytes()
        return tensor | {"parameters": {"binary_data_size": len(raw)}}, raw
    return tensor | {"data": little.flatten().tolist()}, b""


# --- routes ---

bp = Blueprint(NAME, __name__, url_prefix="/v2")


def error_body(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": message}


errors.register(bp, error_body)


def _served(name: str, version: str | None = None) -> tuple[Served, Contract, Task]:
    """The model (``version``: that version of it, runtime/versions.py), its tensor contract and task."""
    if "@" in name:
        raise NotFound(f"model {name!r}: name a version in the path (/v2/models/NAME/versions/N), not with '@'")
    served = registry().named(name if version is None else f"{name}@{version}")
    contract = CONTRACTS.get(served.kind)
    task = {t.name: t for t in current_app.extensions["edge_mm"]["tasks"]}.get(contract.task) if contract else None
    if contract is None or task is None:
        raise NotFound(
            f"{served.kind} model {name!r} is not served over the Open Inference Protocol; use its /v1 route"
        )
    return served, contract, task


@bp.get("")
def server_metadata() -> Response:
    return jsonify({"name": "edge-mm", "version": edge_mm.__version__, "extensions": ["binary_tensor_data"]})


@bp.get("/health/live")
def live() -> Response:
    return jsonify({"live": True})


def _readiness(body: dict[str, Any], ready: bool) -> Response:
    response = jsonify(body | {"ready": ready})
    response.status_code = 200 if ready else 400  # the protocol: 200 true, 4xx false
    return response


@bp.get("/health/ready")
def ready() -> Response:
    return _readiness({}, registry().ready)


@bp.get("/models/<name>")
@bp.get("/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None) -> Response:
    served, contract, task = _served(name, version)
    return jsonify(
        {
            "name": name,
            "versions": [str(v) for v in registry().served_versions(name)],
            "platform": f"edge-mm/{served.kind}",
            "inputs": [i.spec.metadata() for i in contract.inputs],
            "outputs": [o.metadata() for o in contract.outputs],
            "edge_mm": {
                "task": contract.task,
                "route": task.routes[0],
                "device": served.device,
                "tensors": {t.name: t.help for t in (*(i.spec for i in contract.inputs), *contract.outputs)},
                "parameters": "request parameters are the route's options",
            },
        }
    )


@bp.get("/models/<name>/ready")
@bp.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None) -> Response:
    _served(name, version)
    return _readiness({"name": name}, registry().ready)


@bp.post("/models/<name>/infer")
@bp.post("/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None) -> Response:
    deadline = request_deadline()
    served, contract, task = _served(name, version)
    header, binary = _read_body()
    payload = build_payload(contract, name if version is None else f"{name}@{version}", header, binary)
    requested = _requested(header, contract)
    models = Models(registry())
    try:
        body = task.run(models, task.parse(payload, limits(), models), deadline)
    finally:
        g.model_uses = models.used
    tensors = contract.to_tensors(body)
    outputs, chunks = [], []
    any_binary = any(as_binary for _, as_binary in requested)
    for spec, as_binary in requested:
        tensor, raw = _encode(spec, tensors[spec.name], as_binary)
        outputs.append(tensor)
        chunks.append(raw)
    answer: dict[str, Any] = {"model_name": name, "model_version": str(served.version), "outputs": outputs}
    if isinstance(header.get("id"), str):
        answer = {"id": header["id"], **answer}
    text = json.dumps(answer).encode()
    if not any_binary:
        return Response(text, content_type="application/json")
    response = Response(text + b"".join(chunks), content_type="application/octet-stream")
    response.headers[HEADER_LENGTH] = str(len(text))
    return response
