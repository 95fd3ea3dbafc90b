"""Row-wise int8 for ONNX MatMuls: answers that do not depend on batch-mates, and hold on every CPU.

ONNX Runtime's ``quantize_dynamic`` inserts ``DynamicQuantizeLinear``: one activation scale per
*tensor*, computed over the whole batch, padding included. A sentence embedded alone and in a
batch of others then gets different answers (min cosine 0.997, 1.2e-2 per component, as large
as the int8 error itself). This module rewrites each fp32 ``MatMul`` with a constant weight into

    m   = max(|x|) over the last axis (one scale per row: per token, per image row)
    xq  = QuantizeLinear(x * 127 / m, scale 1, zero point 128)        uint8, symmetric
    y   = MatMulIntegerToFloat(xq, Wq, 1, w_scale / 127, 128, 0) * m  (com.microsoft, one fused op)

Integer GEMMs accumulate exactly in int32 and every scale belongs to one row, so a row's answer
is the same whatever else is in the batch (measured: max abs difference 5e-8, fp32 noise).

Weights are symmetric per output column with ``weight_bits`` bits, and the build writes two
forms (build/onnx_backend.py ``INT8_FORMS``). On x86 without VNNI (AVX2, AVX-512BW) ONNX Runtime's
u8 x s8 kernel adds pairs of products in 16 bits (``vpmaddubsw``), which saturates when
255 x 127 x 2 > 32767: with 7-bit weights (within +-63) no pair can overflow, so that form gives
the same answers there as on VNNI (largest difference 6e-4 under ``qemu -cpu Haswell``, fp32
rounding carried through; bench/cpu_paths.py). VNNI, AMX and Arm accumulate in 32 bits and get
the more faithful 8-bit form. Measured on MiniLM (384 sentences, AMX machine): mean/min cosine to
fp32 0.99835/0.99531 with 8-bit weights, 0.99664/0.98776 with 7-bit; per-tensor
``quantize_dynamic`` 0.99712/0.99208 here and 0.9943 mean on an AVX2 machine (its saturation).

**Constant scales where they cost nothing.** Each row quantizer is seven small nodes, and each product
is followed by a rescale and a bias add: most of the row-wise graph's nodes, and at batch 1 their cost
is per node. With ``static`` (activation name -> the largest ``|x|`` seen on calibration sentences,
:func:`activation_ranges`) an activation gets one constant scale instead: ``QuantizeLinear(x,
max/127, 128)`` and ``MatMulIntegerToFloat(xq, Wq, max, w_scale / 127, 128, 0, bias)``, the bias add
folded in. A constant scale depends on nothing in the batch either: answers stay batch-invariant.
:func:`static_candidates` names the activations it suits, those read only by MatMuls that do not
narrow (``K <= N``: query/key/value, attention output and the first feed-forward layer, all reading
layer-normalized values); the narrowing feed-forward output reads GELU values with a few large
outliers and keeps row-wise scales. Measured on MiniLM (256 build sentences, AMD EPYC Zen 5): mean/min
cosine to fp32 0.99821/0.99640 against 0.99834/0.99672 all row-wise (7-bit weights: 0.99647/0.99138
against 0.99662/0.99199), the batch-1 pass in 0.80-0.85x the time. Constant scales on every
activation were faster still (0.71-0.81x) but with 7-bit weights met the 0.995 mean gate by 0.00004.

:func:`weight_only` writes the fallback form: the same int8 weights, dequantized in the graph,
fp32 activations and GEMMs (no int8 kernel, so nothing CPU-specific): what serves when a CPU
misses the int8 form's gate at start-up.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_WEIGHT_BITS = 7
_MS_DOMAIN = "com.microsoft"


@dataclass(frozen=True)
class Rewrite:
    """What a rewrite did: MatMuls turned int8 (or weight-only), and activation quantizers shared."""

    matmuls: int
    row_quantizers: int
    weight_bits: int
    static_quantizers: int = 0  # activations quantized with a calibrated constant scale instead


def _int8_weight(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(int8 weights, per-column scale) with values in +-(2**(bits-1) - 1)."""
    qmax = 2 ** (bits - 1) - 1
    scale = np.abs(w).max(axis=0) / qmax
    scale[scale == 0] = 1.0
    return np.clip(np.round(w / scale), -qmax, qmax).astype(np.int8), scale.astype(np.float32)


def _targets(graph: object, exclude: Collection[str]) -> dict[str, np.ndarray]:
    """MatMul node name -> its constant 2-D fp32 weight, for every MatMul not in ``exclude``."""
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}  # type: ignore[attr-defined]
    found = {}
    for node in graph.node:  # type: ignore[attr-defined]
        if node.op_type == "MatMul" and node.name not in exclude and node.input[1] in inits:
            w = numpy_helper.to_array(inits[node.input[1]])
            if w.ndim == 2 and w.dtype == np.float32:
                found[node.name] = w
    return found


def rowwise_int8(
    src: Path,
    dst: Path,
    exclude: Collection[str] = (),
    weight_bits: int = DEFAULT_WEIGHT_BITS,
    static: Mapping[str, float] | None = None,
) -> Rewrite:
    """``src`` (fp32 ONNX) -> ``dst`` with row-wise int8 MatMuls; MatMuls named in ``exclude`` stay fp32.

    MatMuls that read the same activation (query, key, value) share one quantizer. ``static``: activations
    quantized with a constant scale instead (name -> largest ``|x|`` calibrated; :func:`activation_ranges`).
    """
    import onnx
    from onnx import helper, numpy_helper

    if not 2 <= weight_bits <= 8:
        raise ValueError(f"weight_bits must be 2-8, got {weight_bits}")
    model = onnx.load(str(src))
    graph = model.graph
    targets = _targets(graph, exclude)
    consts: dict[str, np.ndarray] = {
        "rw_127": np.array(127.0, np.float32),
        "rw_eps": np.array(1e-12, np.float32),
        "rw_one": np.array(1.0, np.float32),
        "rw_zp_a": np.array(128, np.uint8),
        "rw_zp_w": np.array(0, np.int8),
    }
    nodes: list[Any] = []
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    static = {x: m for x, m in (static or {}).items() if m > 0}
    biases = _bias_adds(graph, [n for n in graph.node if n.name in targets and n.input[0] in static])
    folded = {add.output[0] for add, _ in biases.values()}
    quantizers: dict[str, str] = {}
    for node in graph.node:
        if node.output and node.output[0] in folded:
            continue  # a bias add folded into the int8 product before it
        if node.name not in targets:
            nodes.append(node)
            continue
        x = node.input[0]
        if x not in quantizers:
            quantizers[x] = f"rw{len(quantizers)}_"
            if x in static:
                nodes.append(_static_quantizer(x, quantizers[x]))
                inits += [
                    numpy_helper.from_array(np.array(static[x] / 127, np.float32), quantizers[x] + "s"),
                    numpy_helper.from_array(np.array(static[x], np.float32), quantizers[x] + "m"),
                ]
            else:
                nodes += _row_quantizer(x, quantizers[x])
        wq, scale = _int8_weight(targets[node.name], weight_bits)
        inits += [
            numpy_helper.from_array(wq, node.name + "_wq"),
            numpy_helper.from_array(scale / 127, node.name + "_ws"),
        ]
        if x in static:
            add, bias = biases.get(node.name, (None, None))
            out = add.output[0] if add is not None else node.output[0]
            nodes.append(_static_matmul(node.name, quantizers[x], out, bias))
        else:
            nodes += _int8_matmul(node.name, quantizers[x], node.output[0])
    _replace(model, nodes, inits)
    if not any(o.domain == _MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(_MS_DOMAIN, 1))
    onnx.save(model, str(dst))
    n_static = sum(1 for x in quantizers if x in static)
    return Rewrite(len(targets), len(quantizers) - n_static, weight_bits, n_static)


def static_candidates(src: Path, exclude: Collection[str] = ()) -> list[str]:
    """The activations a constant scale suits: every MatMul rewritten to read it does not narrow (``K <= N``);
    activations a narrowing MatMul reads (a feed-forward output after GELU) stay row-wise."""
    import onnx

    graph = onnx.load(str(src)).graph
    targets = _targets(graph, exclude)
    readers = _readers(graph)
    found: list[str] = []
    for node in graph.node:
        x = node.input[0] if node.name in targets else None
        if x is None or x in found:
            continue
        if all(_widens(targets[r.name]) for r in readers[x] if r.name in targets and r.input[0] == x):
            found.append(x)
    return found


def _readers(graph: Any) -> dict[str, list[Any]]:
    """Tensor name -> the nodes that read it."""
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for i in node.input:
            readers.setdefault(i, []).append(node)
    return readers


def _widens(w: np.ndarray) -> bool:
    return bool(w.shape[0] <= w.shape[1])


def activation_ranges(
    src: Path, names: Collection[str], feeds: Iterable[Mapping[str, np.ndarray]], mask: str = "attention_mask"
) -> dict[str, float]:
    """The largest ``|x|`` of each activation in ``names`` over ``feeds``, run through ``src`` (fp32) on ONNX
    Runtime. Where an activation is (batch, seq, ...) and the feeds carry ``mask``, padding positions are
    left out: they are nobody's tokens."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(src))
    for name in names:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    found = dict.fromkeys(names, 0.0)
    for feed in feeds:
        values = dict(zip(outputs, session.run(None, dict(feed)), strict=True))
        keep = np.asarray(feed[mask]) > 0 if mask in feed else None
        for name in names:
            v = np.abs(values[name])
            if keep is not None and v.shape[: keep.ndim] == keep.shape:
                v = v[keep]
            if v.size:
                found[name] = max(found[name], float(v.max()))
    return found


def _bias_adds(graph: Any, matmuls: list[Any]) -> dict[str, tuple[Any, str]]:
    """MatMul name -> (the Add that adds a constant bias of its width to its output, when nothing else reads
    that output; the bias's name): folded into the int8 product's own bias input."""
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    readers = _readers(graph)
    found = {}
    for mm in matmuls:
        after = readers.get(mm.output[0], [])
        if len(after) != 1 or after[0].op_type != "Add" or mm.output[0] in outputs:
            continue
        other = [i for i in after[0].input if i != mm.output[0]]
        width = numpy_helper.to_array(inits[mm.input[1]]).shape[1]
        if len(other) == 1 and other[0] in inits and numpy_helper.to_array(inits[other[0]]).shape == (width,):
            found[mm.name] = (after[0], other[0])
    return found


def _row_quantizer(x: str, p: str) -> list[Any]:
    """Nodes that quantize activation ``x`` to uint8 with one scale per row (token): ``p + "xq"`` and the
    row's max ``|x|``, ``p + "m"``, that scales the integer product back."""
    from onnx import helper

    return [
        helper.make_node("ReduceMax", [x], [p + "hi"], axes=[-1], keepdims=1),
        helper.make_node("ReduceMin", [x], [p + "lo"], axes=[-1], keepdims=1),
        helper.make_node("Neg", [p + "lo"], [p + "nlo"]),
        helper.make_node("Max", [p + "hi", p + "nlo", "rw_eps"], [p + "m"]),  # max |x| per row
        helper.make_node("Div", ["rw_127", p + "m"], [p + "inv"]),
        helper.make_node("Mul", [x, p + "inv"], [p + "xs"]),
        helper.make_node("QuantizeLinear", [p + "xs", "rw_one", "rw_zp_a"], [p + "xq"]),
    ]


def _static_quantizer(x: str, p: str) -> Any:
    """Activation ``x`` to uint8 with the calibrated constant scale ``p + "s"`` (values past the calibrated
    largest ``|x|`` saturate)."""
    from onnx import helper

    return helper.make_node("QuantizeLinear", [x, p + "s", "rw_zp_a"], [p + "xq"])


def _static_matmul(name: str, p: str, out: str, bias: str | None) -> Any:
    """MatMul ``name`` on a statically quantized activation: one fused op, the bias (if any) folded in."""
    from onnx import helper

    inputs = [p + "xq", name + "_wq", p + "m", name + "_ws", "rw_zp_a", "rw_zp_w"] + ([bias] if bias else [])
    return helper.make_node("MatMulIntegerToFloat", inputs, [out], name=name, domain=_MS_DOMAIN)


def _int8_matmul(name: str, p: str, out: str) -> list[Any]:
    """MatMul ``name`` as an integer product of quantizer ``p``'s activations and its int8 weight, rescaled to
    ``out`` (the final Mul keeps the MatMul's node name)."""
    from onnx import helper

    return [
        helper.make_node(
            "MatMulIntegerToFloat",
            [p + "xq", name + "_wq", "rw_one", name + "_ws", "rw_zp_a", "rw_zp_w"],
            [out + "_rw"],
            domain=_MS_DOMAIN,
        ),
        helper.make_node("Mul", [out + "_rw", p + "m"], [out], name=name),
    ]


def weight_only(src: Path, dst: Path, exclude: Collection[str] = (), weight_bits: int = 8) -> Rewrite:
    """``src`` (fp32 ONNX) -> ``dst`` whose MatMul weights are stored int8 and dequantized in the graph:
    fp32 activations and GEMMs, a quarter of the fp32 file. The CPU-independent fallback."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    targets = _targets(model.graph, exclude)
    nodes, inits = [], []
    for node in model.graph.node:
        if node.name in targets:
            wq, scale = _int8_weight(targets[node.name], weight_bits)
            w = node.name + "_w"
            inits += [numpy_helper.from_array(wq, w + "q"), numpy_helper.from_array(scale, w + "s")]
            zp = numpy_helper.from_array(np.zeros(len(scale), np.int8), w + "z")
            inits.append(zp)
            nodes.append(helper.make_node("DequantizeLinear", [w + "q", w + "s", w + "z"], [w], axis=1))
            node.input[1] = w
        nodes.append(node)
    _replace(model, nodes, inits)
    onnx.save(model, str(dst))
    return Rewrite(len(targets), 0, weight_bits)


def _replace(model: object, nodes: list, extra_inits: list) -> None:
    """Swap in ``nodes`` and drop initializers nothing reads any more (the fp32 weights replaced)."""
    graph = model.graph  # type: ignore[attr-defined]
    used = {i for n in nodes for i in n.input} | {o.name for o in graph.output}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + extra_inits)
