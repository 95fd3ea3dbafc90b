"""MTCNN's ONNX Runtime candidate: export the three nets, verify them against the TorchScript
nets and the whole detection against the TorchScript pipeline, time both pipelines per frame,
and record which serves (the manifest's ``backends``), as the text and image builders do.

The unit that serves is the pipeline, not one net: P-Net runs once per pyramid level and
R/O-Net on however many candidates survive, so the comparison is ms per detected frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge_mm.build import onnx_backend
from edge_mm.build.mtcnn_nets import ONet, PNet, RNet, export_mtcnn_onnx
from edge_mm.manifest import ORT_VARIANT, FileRef, Variant, sha256_file
from edge_mm.runtime.face_detector import NETS, mtcnn_probe_arrays, mtcnn_probe_outputs
from edge_mm.runtime.mtcnn import Face, detect_faces
from edge_mm.runtime.onnx_session import OnnxSession

BOX_TOLERANCE_PX = 0.5  # ONNX Runtime pipeline vs TorchScript pipeline, every box coordinate
CRITERION = "geometric mean of the per-frame detection times (ms) on the timing frames; a tie serves TorchScript"
ROUNDS = 4  # timed frames per timing frame and backend (after two warm-up frames)
FRAME = (480, 640)  # the timing frame's (height, width): the per-frame budget is for 640x480


@dataclass
class MtcnnBackends:
    """The ``backends`` record, the ONNX Runtime variant (None when refused or not built), and the
    serving nets as ``(nets by name, engine)``."""

    record: dict[str, Any]
    variant: Variant | None
    serving: tuple[dict[str, Any], str]


def timing_frames(samples: Sequence[Image.Image]) -> dict[str, np.ndarray]:
    """The frames both pipelines are timed on: a sample photo with a face at 640x480, and as is."""
    face = samples[2]  # sample_astronaut: one face
    wide = np.asarray(face.resize((FRAME[1], FRAME[0]), Image.Resampling.BILINEAR))
    return {"frame_640x480": wide, "sample_astronaut": np.asarray(face)}


def box_gap(got: list[Face], want: list[Face]) -> float:
    """Largest coordinate difference (px) between matched boxes; inf when the counts differ."""
    if len(got) != len(want):
        return float("inf")
    pairs = zip(got, want, strict=True)
    return max((abs(a - b) for g, w in pairs for a, b in zip(g.box, w.box, strict=True)), default=0.0)


def onnx_candidate(
    eager: tuple[PNet, RNet, ONet],
    torchscript: dict[str, Any],
    out: Path,
    probes: list[dict[str, Any]],
    images: dict[str, np.ndarray],
    *,
    tolerance: float,
    threads: int,
) -> tuple[onnx_backend.Candidate, dict[str, Any], dict[str, OnnxSession]]:
    """Export to ``out/{pnet,rnet,onet}.onnx`` and verify; raises when the export itself fails.

    Gates: every probe output within ``tolerance`` of the TorchScript nets', and on every image
    the same number of faces as the TorchScript pipeline with every box within
    :data:`BOX_TOLERANCE_PX`. Returns (candidate, figures, sessions).
    """
    paths = export_mtcnn_onnx(*eager, out)
    sessions = {n: OnnxSession(paths[n], threads) for n in NETS}
    probe_diff = max(
        float(np.abs(a - b.numpy()).max())
        for a, b in zip(mtcnn_probe_arrays(sessions, probes), mtcnn_probe_outputs(torchscript, probes), strict=True)
    )
    gaps, counts = {}, {}
    for name, image in images.items():
        want = detect_faces(image, *(torchscript[n] for n in NETS))
        got = detect_faces(image, *(sessions[n] for n in NETS), engine="numpy")
        gaps[name], counts[name] = box_gap(got, want), [len(got), len(want)]
    worst = max(gaps.values(), default=0.0)
    misses = []
    if probe_diff > tolerance:
        misses.append(f"probe outputs vs TorchScript {probe_diff:.2e} > {tolerance:.0e}")
    for name, (n_got, n_want) in counts.items():
        if n_got != n_want:
            misses.append(f"{name}: {n_got} faces, TorchScript pipeline {n_want}")
    if np.isfinite(worst) and worst > BOX_TOLERANCE_PX:
        misses.append(f"boxes differ from the TorchScript pipeline's by {worst:.3f} px > {BOX_TOLERANCE_PX}")
    fidelity = {"probe_vs_torchscript_max_abs": probe_diff}
    if np.isfinite(worst):
        fidelity["box_vs_torchscript_max_px"] = round(worst, 5)
    figures = {
        **onnx_backend.versions(),
        "probe_vs_torchscript_max_abs": probe_diff,
        "faces_onnxruntime_vs_torchscript": counts,
        "box_tolerance_px": BOX_TOLERANCE_PX,
    }
    return onnx_backend.Candidate(ORT_VARIANT, not misses, misses, fidelity), figures, sessions


def decide_backend(
    setting: str,
    eager: tuple[PNet, RNet, ONet],
    torchscript: dict[str, Any],
    out: Path,
    probes: list[dict[str, Any]],
    images: dict[str, np.ndarray],
    frames: dict[str, np.ndarray],
    figures: dict[str, Any],
    progress: Callable[[str], None],
    *,
    tolerance: float,
) -> MtcnnBackends:
    """Build and verify the ONNX Runtime candidate unless ``setting`` is torchscript, time both
    pipelines on ``frames``, and pick per ``setting`` (auto: the faster that passes).

    ValueError when ``setting`` names a backend that cannot serve (a failed export raises itself).
    """
    threads = onnx_backend.build_threads()
    candidates = {"torchscript": onnx_backend.Candidate("cpu", True)}
    nets: dict[str, tuple[dict[str, Any], str]] = {"torchscript": (torchscript, "torch")}
    variant = None
    if setting != "torchscript":
        try:
            candidate, ort_figures, sessions = onnx_candidate(
                eager, torchscript, out, probes, images, tolerance=tolerance, threads=threads
            )
        except Exception as exc:
            if setting == "onnxruntime":
                raise
            reason = f"export failed: {type(exc).__name__}: {exc}"[:300]
            candidate, ort_figures, sessions = onnx_backend.Candidate(ORT_VARIANT, False, [reason]), {}, {}
        candidates["onnxruntime"] = candidate
        figures["onnxruntime"] = {**ort_figures, "misses": candidate.misses}
        if candidate.passes:
            files = {n: FileRef(f"{n}.onnx", sha256_file(out / f"{n}.onnx")) for n in NETS}
            notes = ["ONNX (TorchScript-based exporter)", f"opset {onnx_backend.OPSET}", "fp32"]
            notes += ["dynamic batch; P-Net dynamic height and width", "numpy pipeline: no torch at run time"]
            variant = Variant(files, "float32", notes, backend="onnxruntime")
            nets["onnxruntime"] = (sessions, "numpy")
        else:
            for n in NETS:
                (out / f"{n}.onnx").unlink(missing_ok=True)  # a refused graph is not shipped
        progress(
            f"onnxruntime {candidate.fidelity}" + (f" refused: {'; '.join(candidate.misses)}" * (not candidate.passes))
        )

    def pipeline(chosen: tuple[dict[str, Any], str]) -> Callable[[np.ndarray], list[Face]]:
        served, engine = chosen
        return lambda image: detect_faces(image, *(served[n] for n in NETS), engine=engine)  # type: ignore[arg-type]

    runs = {name: (pipeline(chosen), {k: (f,) for k, f in frames.items()}) for name, chosen in nets.items()}
    for name, latency in onnx_backend.measure_latency(runs, threads, dict.fromkeys(frames, ROUNDS)).items():
        candidates[name].latency_ms = latency
    extra = {"criterion": CRITERION, **(onnx_backend.versions() if "onnxruntime" in candidates else {})}
    record = onnx_backend.backends_record(setting, candidates, threads, extra)
    return MtcnnBackends(record, variant, nets[record["serves"]])
