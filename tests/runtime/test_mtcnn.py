"""MTCNN face detection: exact NMS/pyramid/area-resampling plumbing, real photos with the shipped
weights, and agreement with facenet-pytorch's own detect_face, on both engines: torch
(TorchScript / eager nets) and numpy (the nets exported to ONNX, run by ONNX Runtime)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Literal

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from edge_mm.build.mtcnn_nets import (
    ONet,
    PNet,
    RNet,
    export_mtcnn_nets,
    export_mtcnn_onnx,
    load_mtcnn_nets,
)
from edge_mm.errors import Unprocessable
from edge_mm.runtime.area_resample import AreaResampler, area_windows
from edge_mm.runtime.mtcnn import Engine, Face, detect_faces, nms, pyramid_scales
from edge_mm.runtime.onnx_session import OnnxSession
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


@pytest.fixture(scope="module")
def onnx_paths(nets: Nets, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shipped weights exported to ONNX as the build does."""
    return export_mtcnn_onnx(*nets, tmp_path_factory.mktemp("mtcnn-onnx"))


@pytest.fixture(scope="module")
def ort_nets(onnx_paths: dict[str, Path]) -> tuple[OnnxSession, ...]:
    """:func:`onnx_paths` as ONNX Runtime sessions (one thread)."""
    return tuple(OnnxSession(onnx_paths[n], 1) for n in ("pnet", "rnet", "onet"))


@pytest.fixture(scope="module", params=["torch", "numpy"])
def engine_nets(request: pytest.FixtureRequest, nets: Nets) -> tuple[tuple[object, ...], Engine]:
    """(nets, engine): the eager nets through the torch pipeline, or ONNX Runtime through the numpy one."""
    if request.param == "torch":
        return nets, "torch"
    return request.getfixturevalue("ort_nets"), "numpy"


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


def _greedy_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str, one: float) -> list[int]:
    """The textbook loop, one kept box at a time: what the blocked ``nms`` must reproduce."""
    x1, y1, x2, y2 = boxes.astype(np.float64).T
    area = np.maximum(x2 - x1 + one, 0.0) * np.maximum(y2 - y1 + one, 0.0)
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    keep = []
    while order.size:
        i, rest = int(order[0]), order[1:]
        keep.append(i)
        iw = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + one, 0.0)
        ih = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + one, 0.0)
        inter = iw * ih
        denom = np.minimum(area[i], area[rest]) if mode == "min" else area[i] + area[rest] - inter
        order = rest[np.divide(inter, denom, out=np.zeros_like(inter), where=denom > 0) <= threshold]
    return keep


@pytest.mark.parametrize(("mode", "inclusive"), [("union", False), ("union", True), ("min", True)])
def test_nms_blocks_agree_with_the_one_box_at_a_time_loop(mode: Literal["union", "min"], inclusive: bool) -> None:
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 300, (900, 2))  # 900 boxes: several blocks of the overlap matrix
    boxes = np.concatenate([xy, xy + rng.uniform(0, 60, (900, 2))], axis=1).astype(np.float32)
    scores = rng.integers(0, 50, 900).astype(np.float32)  # many ties: the order rule matters
    for threshold in (0.3, 0.7):
        want = _greedy_nms(boxes, scores, threshold, mode, 1.0 if inclusive else 0.0)
        assert nms(boxes, scores, threshold, mode, inclusive=inclusive).tolist() == want


def test_pyramid_scales() -> None:
    # Scaled short side 60 -> 30 -> 15 -> 7.5: the last is under P-Net's 12 px window.
    scales = pyramid_scales(100, 150, min_face_size=20, factor=0.5)
    assert scales == pytest.approx([0.6, 0.3, 0.15])
    assert pyramid_scales(11, 500, min_face_size=12, factor=0.7) == []
    assert len(pyramid_scales(480, 640, min_face_size=20, factor=0.709)) == 10


def test_area_windows_follow_torch_adaptive_pooling() -> None:
    # 5 -> 3: cells [0, 2), [1, 4), [3, 5); 2 -> 4 (upsampling): each input row twice.
    assert [w.tolist() for w in area_windows(5, 3)] == [[0, 1, 3], [2, 4, 5]]
    assert [w.tolist() for w in area_windows(2, 4)] == [[0, 0, 1, 1], [1, 1, 2, 2]]


@pytest.mark.parametrize("size", [(289, 385), (13, 17), (480, 640), (600, 701)])
def test_area_resize_equals_torch_bit_for_bit(size: tuple[int, int]) -> None:
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    nchw = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1).unsqueeze(0)
    want = F.interpolate(nchw.contiguous(), size=size, mode="area")[0].numpy()
    got = AreaResampler(image).resize(*size)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    # facenet-pytorch resizes a permuted (channels-last) tensor: the same numbers
    np.testing.assert_array_equal(got, F.interpolate(nchw, size=size, mode="area")[0].numpy())


@pytest.mark.parametrize("size", [24, 48])
def test_area_crops_equal_torch_bit_for_bit(size: int) -> None:
    image = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    nchw = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1).unsqueeze(0).contiguous()
    y0, y1 = np.array([0, 10, 100, 0, 299]), np.array([300, 21, 130, 7, 300])
    x0, x1 = np.array([0, 3, 350, 5, 0]), np.array([400, 40, 400, 200, 1])  # whole, small, edge, thin, 1 px
    got = AreaResampler(image).crops(y0, y1, x0, x1, size)
    assert got.shape == (5, 3, size, size)
    for k in range(5):
        crop = nchw[:, :, y0[k] : y1[k], x0[k] : x1[k]]
        np.testing.assert_array_equal(got[k], F.interpolate(crop, size=(size, size), mode="area")[0].numpy())
    assert AreaResampler(image).crops(y0[:0], y1[:0], x0[:0], x1[:0], size).shape == (0, 3, size, size)


def test_numpy_engine_matches_torch_engine_on_the_same_nets(nets: Nets) -> None:
    """Same eager nets behind a numpy call: the two engines differ only in pixels code, so boxes agree exactly."""

    def numpy_call(net: torch.nn.Module) -> Callable[[np.ndarray], tuple[np.ndarray, ...]]:
        def call(x: np.ndarray) -> tuple[np.ndarray, ...]:
            with torch.inference_mode():
                return tuple(o.numpy() for o in net(torch.from_numpy(x)))

        return call

    image = skimage_photo("motorcycle_left.png")[::2, ::2].copy()
    want = detect_faces(image, *nets, thresholds=(0.5, 0.6, 0.6))
    got = detect_faces(image, *(numpy_call(n) for n in nets), thresholds=(0.5, 0.6, 0.6), engine="numpy")
    assert len(got) == len(want) >= 1
    np.testing.assert_allclose([f.box for f in got], [f.box for f in want], atol=1e-3)
    with pytest.raises(ValueError, match="engine"):
        detect_faces(image, *nets, engine="tensorflow")  # type: ignore[arg-type]


def test_rejects_bad_images_and_options(nets: Nets) -> None:
    with pytest.raises(ValueError, match="uint8"):
        detect_faces(np.zeros((20, 20, 3), np.float32), *nets)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        detect_faces(np.zeros((20, 20), np.uint8), *nets)
    for options in ({"min_face_size": 0}, {"thresholds": (0.6, 0.7)}, {"factor": 1.0}):
        with pytest.raises(Unprocessable) as err:
            detect_faces(np.zeros((20, 20, 3), np.uint8), *nets, **options)  # type: ignore[arg-type]
        assert err.value.status == 422


def test_blank_and_tiny_images_have_no_faces(engine_nets: tuple[tuple[object, ...], Engine]) -> None:
    nets, engine = engine_nets
    assert detect_faces(np.full((120, 160, 3), 128, np.uint8), *nets, engine=engine) == []  # type: ignore[arg-type]
    assert detect_faces(np.zeros((8, 8, 3), np.uint8), *nets, engine=engine) == []  # type: ignore[arg-type]


def test_runtime_modules_do_not_import_build_only_packages() -> None:
    code = (
        "import sys\n"
        "import edge_mm.runtime.mtcnn, edge_mm.runtime.silero_vad, edge_mm.runtime.face_detector\n"
        "import edge_mm.media.audio\n"
        "banned = ('torchvision', 'transformers', 'scipy', 'facenet_pytorch',"
        " 'silero_vad')\n"
        "bad = sorted(m for m in banned if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_numpy_engine_never_imports_torch(onnx_paths: dict[str, Path], tmp_path: Path) -> None:
    """The numpy pipeline on the exported nets, in a process where importing torch fails: same faces."""
    image = skimage_photo("astronaut.png")[::2, ::2].copy()
    np.save(tmp_path / "image.npy", image)
    code = f"""
import sys
class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError(name)
sys.meta_path.insert(0, BlockTorch())
import json
import numpy as np
from pathlib import Path
from edge_mm.runtime.mtcnn import detect_faces
from edge_mm.runtime.onnx_session import OnnxSession
nets = [OnnxSession(Path(p), 1) for p in {[str(onnx_paths[n]) for n in ("pnet", "rnet", "onet")]!r}]
faces = detect_faces(np.load({str(tmp_path / "image.npy")!r}), *nets, engine="numpy")
assert "torch" not in sys.modules
print(json.dumps([f.as_dict() for f in faces]))
"""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    nets = [OnnxSession(onnx_paths[n], 1) for n in ("pnet", "rnet", "onet")]
    want = [f.as_dict() for f in detect_faces(image, *nets, engine="numpy")]
    assert len(want) == 1
    assert json.loads(done.stdout) == json.loads(json.dumps(want))


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
def test_photos_without_people_have_no_faces(engine_nets: tuple[tuple[object, ...], Engine], name: str) -> None:
    served, engine = engine_nets
    assert detect_faces(skimage_photo(name), *served, engine=engine) == []  # type: ignore[arg-type]


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
def test_agrees_with_facenet_pytorch(nets: Nets, engine_nets: tuple[tuple[object, ...], Engine], name: str) -> None:
    """Same weights, reference pipeline: boxes, landmarks within 0.5 px; probs 1e-4. Both engines:
    eager nets through the torch pipeline, and ONNX Runtime through the numpy one."""
    reference = _reference_detect_face()
    image = skimage_photo(name)
    with torch.no_grad():
        ref_boxes, ref_points = reference.detect_face(image, 20, *nets, [0.6, 0.7, 0.7], 0.709, torch.device("cpu"))
    ref_boxes = np.asarray(ref_boxes[0], dtype=np.float64).reshape(-1, 5)
    ref_points = np.asarray(ref_points[0], dtype=np.float64).reshape(-1, 5, 2)
    order = np.argsort(-ref_boxes[:, 4], kind="stable")
    ref_boxes, ref_points = ref_boxes[order], ref_points[order]

    served, engine = engine_nets
    faces = detect_faces(image, *served, engine=engine)  # type: ignore[arg-type]
    assert len(faces) == len(ref_boxes) >= 1  # motorcycle_left.png holds two faces
    height, width = image.shape[:2]
    want = ref_boxes[:, :4].clip(0, [width, height, width, height])
    np.testing.assert_allclose([f.box for f in faces], want, atol=0.5)
    np.testing.assert_allclose([f.confidence for f in faces], ref_boxes[:, 4], atol=1e-4)
    np.testing.assert_allclose([f.landmarks for f in faces], ref_points, atol=0.5)
