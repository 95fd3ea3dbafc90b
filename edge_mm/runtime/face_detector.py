"""A loaded MTCNN artifact: P/R/O-Net as TorchScript modules or ONNX Runtime sessions; the
detection pipeline is runtime/mtcnn.py. The ONNX Runtime variant never imports torch."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from edge_mm.errors import Unprocessable
from edge_mm.manifest import ModelEntry
from edge_mm.runtime.artifacts import load_artifact
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.mtcnn import Engine, Face, detect_faces, min_face_floor
from edge_mm.runtime.probes import probe_array, probe_pixels, probe_tensor

if TYPE_CHECKING:
    import torch

NETS = ("pnet", "rnet", "onet")


def mtcnn_probe_outputs(nets: dict[str, Any], probes: list[dict[str, Any]], device: str = "cpu") -> list[torch.Tensor]:
    """Each probe ``{"net", "shape"}`` through its torch net -> all outputs flattened and concatenated (CPU float32)."""
    import torch

    outs = []
    with torch.inference_mode():
        for p in probes:
            x = probe_tensor(*p["shape"]).to(device).contiguous(memory_format=torch.channels_last)
            outs.append(torch.cat([o.float().flatten().cpu() for o in nets[p["net"]](x)]))
    return outs


def mtcnn_probe_arrays(nets: dict[str, Any], probes: list[dict[str, Any]]) -> list[np.ndarray]:
    """:func:`mtcnn_probe_outputs` for nets that take and return numpy (ONNX Runtime sessions); no torch."""
    outs = []
    for p in probes:
        got = nets[p["net"]](probe_array(*p["shape"]))
        outs.append(np.concatenate([np.asarray(o, np.float32).ravel() for o in got]))
    return outs


@dataclass
class FaceDetector:
    """:meth:`detect` is thread-safe (the nets keep no state).

    ``engine`` is ``"numpy"`` for the ONNX Runtime variant (sessions, numpy in and out),
    ``"torch"`` for TorchScript (CPU or CUDA).
    """

    name: str
    entry: ModelEntry
    nets: dict[str, Any]
    device: str
    engine: Engine = "torch"

    @classmethod
    def load(cls, name: str, entry: ModelEntry, root: Path, device: str, variant: str, max_batch: int) -> FaceDetector:
        chosen = entry.variants[variant]
        nets = {
            n: load_artifact(dataclasses.replace(chosen, files={"model": chosen.files[n]}), root, device) for n in NETS
        }
        return cls(name, entry, nets, device, "numpy" if chosen.backend == "onnxruntime" else "torch")

    def detect(
        self,
        image: Image.Image,
        *,
        min_face_size: float,
        thresholds: tuple[float, float, float],
        max_side: int,
        deadline: Deadline | None = None,
    ) -> list[Face]:
        """Faces in pixels of ``image``; images longer than ``max_side`` px are searched at a smaller scale.

        422 when ``min_face_size`` is below the floor for this image size (see ``min_face_floor``).
        """
        scale = min(1.0, max_side / max(image.size))
        floor = min_face_floor(round(image.height * scale), round(image.width * scale)) / scale
        if min_face_size < floor:
            raise Unprocessable(
                f"min_face_size {min_face_size:g} px is too small for a {image.width}x{image.height} image searched "
                f"at max_side {max_side}: use at least {math.ceil(floor)} px, or a smaller max_side"
            )
        if scale < 1.0:
            image = image.resize(
                (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BILINEAR
            )
        faces = detect_faces(
            np.asarray(image.convert("RGB")),
            self.nets["pnet"],
            self.nets["rnet"],
            self.nets["onet"],
            min_face_size=max(1.0, min_face_size * scale),
            thresholds=thresholds,
            device=self.device,
            deadline=deadline,
            engine=self.engine,
        )
        if scale == 1.0:
            return faces
        return [
            Face(
                box=(f.box[0] / scale, f.box[1] / scale, f.box[2] / scale, f.box[3] / scale),
                confidence=f.confidence,
                landmarks=tuple((x / scale, y / scale) for x, y in f.landmarks),
            )
            for f in faces
        ]

    def check_outputs(self, inputs: list[dict[str, Any]]) -> list[Any]:
        if self.engine == "numpy":
            return mtcnn_probe_arrays(self.nets, inputs)
        return mtcnn_probe_outputs(self.nets, inputs, self.device)

    def warm(self) -> float:
        t0 = time.perf_counter()
        self.detect(
            Image.fromarray(probe_pixels(240, 320)), min_face_size=20, thresholds=(0.6, 0.7, 0.7), max_side=1280
        )
        return (time.perf_counter() - t0) * 1000
