"""Build MTCNN face detection (facenet-pytorch weights): TorchScript nets, their ONNX twins, the measured choice."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from edge_mm.build.accelerator import NO_GPU, resolve_accelerator
from edge_mm.build.errors import BuildError
from edge_mm.build.manifest_entry import SAMPLE_NAMES, built_entry, file_ref, sample_images, write_reference
from edge_mm.build.mtcnn_nets import ONet, PNet, RNet, export_mtcnn_nets, load_mtcnn_nets
from edge_mm.build.mtcnn_onnx import MtcnnBackends, decide_backend, timing_frames
from edge_mm.build.progress import Progress
from edge_mm.config import ModelSpec
from edge_mm.errors import ConfigError
from edge_mm.manifest import NO_CUDA_KEY, ORT_VARIANT, FileRef, ModelEntry, Variant
from edge_mm.runtime.artifacts import load_module
from edge_mm.runtime.face_detector import mtcnn_probe_arrays, mtcnn_probe_outputs
from edge_mm.runtime.mtcnn import detect_faces

MTCNN_TOLERANCE = 1e-4
# `edge-mm check` on CUDA: the fp32 nets may run TF32 convolutions there (cuDNN's default)
MTCNN_CUDA_TOLERANCE = 2e-2
# Shapes of the probe tensors run through each net for `edge-mm check`.
MTCNN_PROBES = [
    {"net": "pnet", "shape": [1, 3, 61, 77]},
    {"net": "rnet", "shape": [5, 3, 24, 24]},
    {"net": "onet", "shape": [5, 3, 48, 48]},
]


_NETS = ("pnet", "rnet", "onet")
_NOTES = [
    "PNet scripted (any size)",
    "RNet/ONet traced",
    "channels_last inputs",
    "fp32: nets are tiny, int8 buys nothing",
]


def build_face_detector(
    spec: ModelSpec, source: Path, out: Path, progress: Progress, *, accelerator: str | None = "cuda"
) -> ModelEntry:
    t0 = time.perf_counter()
    eager = _load_eager_nets(spec, source)
    samples = sample_images()
    loaded, figures = _export_and_verify(spec, eager, samples, out, progress)
    files = {n: file_ref(out / f"{n}.pt", out) for n in _NETS}
    variants = {"cpu": Variant(files=files, dtype="float32", notes=_NOTES)}
    cuda = _cuda_variant(accelerator, files, out)
    if cuda is not None:
        variants["cuda"] = cuda
    else:
        figures[NO_CUDA_KEY] = NO_GPU
    backends = _choose_backend(spec, eager, loaded, samples, out, figures, progress)
    if backends.variant is not None:
        variants[ORT_VARIANT] = backends.variant
    progress(f"serves {backends.record['serves']}: {backends.record['reason']}")
    return built_entry(
        spec,
        t0,
        figures,
        variants=variants,
        inputs=[{"name": "image", "dtype": "uint8", "shape": ["H", "W", 3], "note": "RGB; pyramid built at run time"}],
        outputs=[{"name": "faces", "fields": ["box", "confidence", "landmarks"]}],
        preprocessing={"pixel_scale": "(x - 127.5) / 128", "pyramid_factor": 0.709, "thresholds": [0.6, 0.7, 0.7]},
        files={"reference": _serving_reference(backends.serving, out)},
        options=dict(spec.options),
        backends=backends.record,
    )


def _load_eager_nets(spec: ModelSpec, source: Path) -> tuple[PNet, RNet, ONet]:
    data_dir = source if source.is_dir() else source.parent
    try:
        return load_mtcnn_nets(data_dir)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"model {spec.name}: {exc}; source must be the folder with pnet.pt, rnet.pt, onet.pt"
        ) from None


def _export_and_verify(
    spec: ModelSpec, eager: tuple[PNet, RNet, ONet], samples: list[Image.Image], out: Path, progress: Progress
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Export the nets to ``out`` and load them back; they must match eager on the probes and find the same faces
    in the astronaut photo. Returns the loaded nets and the build's figures so far."""
    for name, module in zip(_NETS, export_mtcnn_nets(*eager), strict=True):
        torch.jit.save(module, str(out / f"{name}.pt"))
    loaded = {n: load_module(out / f"{n}.pt", "cpu") for n in _NETS}
    eager_nets = dict(zip(_NETS, eager, strict=True))
    figures: dict[str, Any] = {
        "exported_vs_eager_max_abs": max(
            float((a - b).abs().max())
            for a, b in zip(
                mtcnn_probe_outputs(loaded, MTCNN_PROBES), mtcnn_probe_outputs(eager_nets, MTCNN_PROBES), strict=True
            )
        ),
        "tolerance": MTCNN_TOLERANCE,
    }
    astronaut = np.asarray(samples[2])
    faces_eager = detect_faces(astronaut, *eager)
    faces_art = detect_faces(astronaut, loaded["pnet"], loaded["rnet"], loaded["onet"])
    figures["sample_astronaut_faces"] = len(faces_art)
    if len(faces_art) != len(faces_eager):
        raise BuildError(f"model {spec.name}: exported nets find {len(faces_art)} faces, eager {len(faces_eager)}")
    if faces_art:
        figures["sample_box_max_abs_px"] = max(
            max(abs(a - b) for a, b in zip(fa.box, fe.box, strict=True))
            for fa, fe in zip(faces_art, faces_eager, strict=True)
        )
    if figures["exported_vs_eager_max_abs"] > MTCNN_TOLERANCE:
        raise BuildError(
            f"model {spec.name}: exported vs eager {figures['exported_vs_eager_max_abs']:.2e} > {MTCNN_TOLERANCE}"
        )
    progress(
        f"MTCNN nets exported (max abs diff {figures['exported_vs_eager_max_abs']:.1e}, astronaut faces {len(faces_art)})"
    )
    return loaded, figures


def _cuda_variant(accelerator: str | None, files: dict[str, FileRef], out: Path) -> Variant | None:
    """fp32 nets: the same files serve the accelerator, with their own reference there; None without one."""
    accel = resolve_accelerator(accelerator)
    if accel is None:
        return None
    on_accel = {n: load_module(out / f"{n}.pt", accel.device.type) for n in _NETS}
    accel_out = mtcnn_probe_outputs(on_accel, MTCNN_PROBES, accel.device.type)
    accel_ref = write_reference(
        out / "reference-cuda.json", MTCNN_PROBES, [t.tolist() for t in accel_out], MTCNN_CUDA_TOLERANCE
    )
    return Variant(
        files={**files, "reference": accel_ref}, dtype="float32", notes=[*_NOTES, "same files, loaded on CUDA"]
    )


def _choose_backend(
    spec: ModelSpec,
    eager: tuple[PNet, RNet, ONet],
    loaded: dict[str, Any],
    samples: list[Image.Image],
    out: Path,
    figures: dict[str, Any],
    progress: Progress,
) -> MtcnnBackends:
    """TorchScript nets or their ONNX twins (build/mtcnn_onnx.py): checked on the sample photos, timed on frames."""
    frames = timing_frames(samples)
    images = {**{f"sample_{n}": np.asarray(im) for n, im in zip(SAMPLE_NAMES, samples, strict=True)}, **frames}
    try:
        return decide_backend(
            spec.artifact_backend,
            eager,
            loaded,
            out,
            MTCNN_PROBES,
            images,
            frames,
            figures,
            progress,
            tolerance=MTCNN_TOLERANCE,
        )
    except ValueError as exc:
        raise BuildError(f"model {spec.name}: {exc}") from None


def _serving_reference(serving: tuple[dict[str, Any], str], out: Path) -> FileRef:
    """`edge-mm check`'s reference: the probes through the nets that serve (numpy pipeline or TorchScript)."""
    serving_nets, engine = serving
    ref_out = (
        mtcnn_probe_arrays(serving_nets, MTCNN_PROBES)
        if engine == "numpy"
        else [t.numpy() for t in mtcnn_probe_outputs(serving_nets, MTCNN_PROBES)]
    )
    return write_reference(out / "reference.json", MTCNN_PROBES, [t.tolist() for t in ref_out])
