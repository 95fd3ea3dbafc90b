"""MTCNN face detection: exact NMS/pyramid plumbing, real photos with the shipped
weights, and agreement with facenet-pytorch's own detect_face."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image

from edge_mm.build.mtcnn_nets import (
    ONet,
    PNet,
    RNet,
    export_mtcnn_nets,
    load_mtcnn_nets,
)
from edge_mm.errors import Unprocessable
from edge_mm.runtime.mtcnn import Face, detect_faces, nms, pyramid_scales
from tests.conftest import missing, need, need_import

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*:FutureWarning")

Nets = tuple[PNet, RNet, ONet]


def models_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "build" / "models"


def skimage_photo(name: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB photo from the scikit-image wheel (skimage not imported)."""
    spec = importlib.util.find_spec("skimage")
    need(
        spec is not None and spec.submodule_search_locations,
        "scikit-image is not installed: its wheel carries the test photos",
    )
    assert spec is not None
    assert spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # Two OpenMP threads on two shared cores stall badly when another process is busy.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def nets() -> Nets:
    data = models_dir() / "facenet_pytorch" / "data"
    need((data / "onet.pt").is_file(), f"MTCNN weights not in {data} (pip install --no-deps facenet-pytorch)")
    return load_mtcnn_nets(data)


# --- plumbing with exact answers ----------------------------------------------

BOXES = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 5, 5]], dtype=float)
SCORES = np.array([0.9, 0.8, 0.7, 0.95])


def test_nms_union() -> None:
    # IoU(0, 1) = 81 / 119 = 0.68; box 3 overlaps 0 and 1 by 0.25 and 0.15.
    assert nms(BOXES, SCORES, 0.5).tolist() == [3, 0, 2]
    assert nms(BOXES, SCORES, 0.7).tolist() == [3, 0, 1, 2]


def test_nms_union_inclusive_counts_pixels() -> None:
    # With +1 widths IoU(0, 1) = 100 / 142 = 0.704 > 0.7.
    assert nms(BOXES, SCORES, 0.7, inclusive=True).tolist() == [3, 0, 2]


def test_nms_min_mode() -> None:
    # Box 3 lies inside box 0 (overlap 25 / 25 = 1); 16 / 25 of it lies in box 1.
    assert nms(BOXES, SCORES, 0.5, "min").tolist() == [3, 2]
    assert nms(BOXES, SCORES, 0.7, "min").tolist() == [3, 1, 2]


def test_nms_edge_cases() -> None:
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    # Overlap exactly at the threshold is kept; equal scores keep the lower index first.
    assert nms([[0, 0, 2, 1], [0, 0, 1, 1]], [0.5, 0.5], 0.5).tolist() == [0, 1]
    assert nms([[0, 0, 2, 1], [0, 0, 1, 1]], [0.5, 0.5], 0.49).tolist() == [0]
    with pytest.raises(ValueError, match="mode"):
        nms(BOXES, SCORES, 0.5, "max")  # type: ignore[arg-type]


def test_nms_agrees_with_torchvision_on_random_boxes() -> None:
    tv_ops = need_import("torchvision.ops", "torchvision is the reference only")
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (300, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (300, 2))], axis=1).astype(np.float32)
    scores = rng.permutation(300).astype(np.float32)  # distinct scores: no tie-order question
    for threshold in (0.3, 0.5, 0.7):
        want = tv_ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), threshold)
        assert nms(boxes, scores, threshold).tolist() == want.tolist()


def test_pyramid_scales() -> None:
    # Scaled short side 60 -> 30 -> 15 -> 7.5: the last is under P-Net's 12 px window.
    scales = pyramid_scales(100, 150, min_face_size=20, factor=0.5)
    assert scales == pytest.approx([0.6, 0.3, 0.15])
    assert pyramid_scales(11, 500, min_face_size=12, factor=0.7) == []
    assert len(pyramid_scales(480, 640, min_face_size=20, factor=0.709)) == 10


def test_rejects_bad_images_and_options(nets: Nets) -> None:
    with pytest.raises(ValueError, match="uint8"):
        detect_faces(np.zeros((20, 20, 3), np.float32), *nets)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        detect_faces(np.zeros((20, 20), np.uint8), *nets)
    for options in ({"min_face_size": 0}, {"thresholds": (0.6, 0.7)}, {"factor": 1.0}):
        with pytest.raises(Unprocessable) as err:
            detect_faces(np.zeros((20, 20, 3), np.uint8), *nets, **options)  # type: ignore[arg-type]
        assert err.value.status == 422


def test_blank_and_tiny_images_have_no_faces(nets: Nets) -> None:
    assert detect_faces(np.full((120, 160, 3), 128, np.uint8), *nets) == []
    assert detect_faces(np.zeros((8, 8, 3), np.uint8), *nets) == []


def test_runtime_modules_do_not_import_build_only_packages() -> None:
    code = (
        "import sys\n"
        "import edge_mm.runtime.mtcnn, edge_mm.runtime.silero_vad\n"
        "import edge_mm.media.audio\n"
        "banned = ('torchvision', 'transformers', 'scipy', 'facenet_pytorch',"
        " 'silero_vad')\n"
        "bad = sorted(m for m in banned if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


# --- behaviour with the real weights on real photos ---------------------------


def test_astronaut_has_one_face_with_landmarks(nets: Nets) -> None:
    image = skimage_photo("astronaut.png")  # 512x512; measured box about (181, 62, 268, 172)
    faces = detect_faces(image, *nets)
    assert len(faces) == 1
    face = faces[0]
    assert isinstance(face, Face)
    assert face.confidence > 0.95
    x1, y1, x2, y2 = face.box
    assert 200 < (x1 + x2) / 2 < 250
    assert 95 < (y1 + y2) / 2 < 140
    assert 60 < x2 - x1 < 130
    assert 70 < y2 - y1 < 140
    assert len(face.landmarks) == 5
    for x, y in face.landmarks:
        assert x1 <= x <= x2
        assert y1 <= y <= y2
    (lex, ley), (rex, rey), (_, nose_y), (mlx, mly), (mrx, mry) = face.landmarks
    assert lex < rex
    assert mlx < mrx
    assert max(ley, rey) < nose_y < min(mly, mry)
    assert face.as_dict()["box"] == list(face.box)


@pytest.mark.parametrize("name", ["chelsea.png", "coffee.png"])
def test_photos_without_people_have_no_faces(nets: Nets, name: str) -> None:
    assert detect_faces(skimage_photo(name), *nets) == []


def test_torchscript_nets_give_the_same_faces(nets: Nets) -> None:
    image = skimage_photo("astronaut.png")[::2, ::2].copy()  # 256x256 keeps it fast
    eager = detect_faces(image, *nets)
    scripted = detect_faces(image, *export_mtcnn_nets(*nets))
    assert len(eager) == len(scripted) == 1
    np.testing.assert_allclose(scripted[0].box, eager[0].box, atol=1e-3)
    np.testing.assert_allclose(scripted[0].landmarks, eager[0].landmarks, atol=1e-3)


def test_boxes_are_clipped_to_the_image(nets: Nets) -> None:
    image = skimage_photo("astronaut.png")[80:, 200:].copy()  # face cut at the left/top edges
    for face in detect_faces(image, *nets, thresholds=(0.5, 0.5, 0.5)):
        x1, y1, x2, y2 = face.box
        assert 0 <= x1 <= x2 <= image.shape[1]
        assert 0 <= y1 <= y2 <= image.shape[0]


def _reference_detect_face() -> ModuleType:
    """facenet-pytorch's detect_face.py alone (its package import needs requests)."""
    path = models_dir() / "facenet_pytorch" / "models" / "utils" / "detect_face.py"
    need(path.is_file(), f"facenet-pytorch source not installed at {path}")
    spec = importlib.util.spec_from_file_location("_facenet_detect_face", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (ImportError, OSError, RuntimeError) as exc:  # torchvision missing or broken
        missing(f"facenet-pytorch's detect_face does not import: {exc!r}")
    return module


@pytest.mark.parametrize("name", ["astronaut.png", "motorcycle_left.png"])
def test_agrees_with_facenet_pytorch(nets: Nets, name: str) -> None:
    """Same nets, reference pipeline: boxes, landmarks within 0.5 px; probs 1e-4."""
    reference = _reference_detect_face()
    image = skimage_photo(name)
    with torch.no_grad():
        ref_boxes, ref_points = reference.detect_face(image, 20, *nets, [0.6, 0.7, 0.7], 0.709, torch.device("cpu"))
    ref_boxes = np.asarray(ref_boxes[0], dtype=np.float64).reshape(-1, 5)
    ref_points = np.asarray(ref_points[0], dtype=np.float64).reshape(-1, 5, 2)
    order = np.argsort(-ref_boxes[:, 4], kind="stable")
    ref_boxes, ref_points = ref_boxes[order], ref_points[order]

    faces = detect_faces(image, *nets)
    assert len(faces) == len(ref_boxes) >= 1  # motorcycle_left.png holds two faces
    height, width = image.shape[:2]
    want = ref_boxes[:, :4].clip(0, [width, height, width, height])
    np.testing.assert_allclose([f.box for f in faces], want, atol=0.5)
    np.testing.assert_allclose([f.confidence for f in faces], ref_boxes[:, 4], atol=1e-4)
    np.testing.assert_allclose([f.landmarks for f in faces], ref_points, atol=0.5)
