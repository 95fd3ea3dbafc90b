"""OCR runtime: the numpy DB post-processing and CTC decoding on exact inputs, then the real PP-OCRv6
graphs (rapidocr 3.10, from build/models) on rendered text, against the rapidocr library itself."""

from __future__ import annotations

import io
import math
import sys

import numpy as np
import pytest
from PIL import Image, ImageOps

from edge_mm.build.ocr import render_text
from edge_mm.errors import DeadlineExceeded
from edge_mm.runtime import ocr
from edge_mm.runtime.deadline import Deadline
from tests.conftest import PACKAGES, need_import
from tests.ocr_fixtures import *  # noqa: F403

PLATE = "KA-4721"
SENTENCE = "The quick brown fox jumps"


def test_dilate2x2_is_opencvs_centre_anchored_kernel():
    mask = np.zeros((4, 4), bool)
    mask[1, 1] = True
    got = ocr.dilate2x2(mask)
    assert np.argwhere(got).tolist() == [[1, 1], [1, 2], [2, 1], [2, 2]]


def test_regions_are_8_connected():
    mask = np.zeros((6, 8), bool)
    mask[0, 0] = mask[1, 1] = True  # diagonal neighbours: one region
    mask[3:5, 4:7] = True  # a block
    mask[0, 7] = True  # alone
    found = ocr.regions(mask)
    assert len(found) == 3
    spans = sorted((int(p[:, 0].min()), int(p[:, 1].min()), int(p[:, 0].max()), int(p[:, 1].max())) for p in found)
    assert spans == [(0, 0, 1, 1), (4, 3, 6, 4), (7, 0, 7, 0)]


def test_regions_join_a_u_shape_through_its_bottom():
    mask = np.zeros((5, 7), bool)
    mask[0:5, 0] = mask[0:5, 6] = mask[4, :] = True
    assert len(ocr.regions(mask)) == 1


def test_min_area_rect_of_a_rotated_rectangle():
    angle = math.radians(20)
    axes = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    corners = np.array([[-30, -5], [30, -5], [30, 5], [-30, 5]], float) @ axes + [100, 50]
    centre, half, got_axes = ocr.min_area_rect(corners)
    assert np.allclose(centre, [100, 50])
    assert sorted(half.tolist()) == pytest.approx([5, 30])
    assert np.allclose(np.abs(got_axes @ axes.T).max(1), 1)  # the same axes, up to order and sign


def test_boxes_from_map_grows_a_rectangle_by_dbs_unclip_offset():
    prob = np.zeros((40, 100), np.float32)
    prob[10:20, 20:80] = 0.9  # a 60 x 10 px text region
    (region,) = ocr.boxes_from_map(prob)
    assert region.score == pytest.approx(0.9 * 600 / 671, abs=1e-4)  # the dilated 61 x 11 px box holds 60 x 10 text px
    # the dilated region spans x 20-80, y 10-20 as points (61 x 11 px); DB unclips by area * 1.6 / perimeter
    w, h = 60, 10
    grow = w * h * 1.6 / (2 * (w + h))
    x0, y0 = region.box.min(0)
    x1, y1 = region.box.max(0)
    assert (x0, y0, x1, y1) == pytest.approx((20 - grow, 10 - grow, 80 + grow, 20 + grow), abs=0.01)
    assert region.box[0].tolist() == pytest.approx([x0, y0])  # clockwise from the top-left


def test_boxes_from_map_drops_faint_and_tiny_regions():
    prob = np.zeros((40, 100), np.float32)
    prob[5:15, 5:50] = 0.35  # above the map threshold, below the box threshold
    prob[30, 90] = 0.9  # one pixel
    assert ocr.boxes_from_map(prob) == []


def test_det_size_is_multiples_of_32_within_max_side():
    assert ocr.det_size(420, 900, 2000) == (736, 1568)  # the shorter side up to 736
    h, w = ocr.det_size(420, 900, 1000)
    assert max(h, w) <= 1000 + 16
    assert h % 32 == 0
    assert w % 32 == 0
    assert ocr.det_size(5000, 100, 2000) == (1984, 32)  # 2000 / 32 = 62.5 rounds to 62; 40 px rounds up to 32


def test_rec_input_keeps_aspect_pads_and_bounds_the_width():
    short, long = Image.new("RGB", (96, 48), "black"), Image.new("RGB", (480, 48), "white")
    batch = ocr.rec_input([short, long])
    assert batch.shape == (2, 3, 48, 480)
    assert (batch[0, :, :, :96] == -1).all()  # black
    assert (batch[0, :, :, 96:] == 0).all()  # padding
    assert (batch[1] == 1).all()  # white, full width
    assert ocr.rec_input([Image.new("RGB", (20000, 10))]).shape == (1, 3, 48, ocr.REC_MAX_WIDTH)


def test_ctc_decode_merges_repeats_and_drops_blanks():
    chars = ["", "a", "b", " "]
    steps = [1, 1, 0, 1, 2, 2, 0, 3, 0]
    probs = np.full((1, len(steps), 4), 0.01, np.float32)
    for t, c in enumerate(steps):
        probs[0, t, c] = 0.9
    probs[0, 0, 1] = 0.7
    ((text, score),) = ocr.ctc_decode(probs, chars)
    assert text == "aab "
    assert score == pytest.approx((0.7 + 0.9 + 0.9 + 0.9) / 4, abs=1e-5)


def test_ctc_decode_of_all_blanks_is_empty():
    probs = np.zeros((1, 5, 3), np.float32)
    probs[:, :, 0] = 1
    assert ocr.ctc_decode(probs, ["", "a", " "]) == [("", 0.0)]


def test_reading_order_groups_lines_by_top():
    def region(x: float, y: float) -> ocr.Region:
        return ocr.Region(np.array([[x, y], [x + 10, y], [x + 10, y + 8], [x, y + 8]], float), 0.9)

    got = ocr.reading_order([region(50, 103), region(0, 100), region(0, 40)])
    assert [r.box[0].tolist() for r in got] == [[0, 40], [0, 100], [50, 103]]


# ---- the real graphs ----


def read(reader, image: Image.Image, **kw):  # type: ignore[no-untyped-def]
    return reader.read(image, **({"max_side": 2000, "max_lines": 50} | kw))


def test_reads_a_plate_and_a_sentence_exactly(ocr_reader):
    image = render_text([PLATE, SENTENCE, "over the lazy dog 2024."])
    lines = read(ocr_reader, image)
    assert [line.text for line in lines] == [PLATE, SENTENCE, "over the lazy dog 2024."]
    assert min(line.score for line in lines) > 0.95
    (x0, y0), _, (x1, y1), _ = lines[0].box
    assert 30 < x0 < 45
    assert 35 < y0 < 50
    assert 200 < x1 < 250
    assert 85 < y1 < 105


def test_reads_rotated_text(ocr_reader):
    image = render_text([PLATE], size=(420, 200)).rotate(8, expand=True, fillcolor="white")
    (line,) = read(ocr_reader, image)
    assert line.text == PLATE
    (x0, y0), (x1, y1), _, _ = line.box
    assert y0 > y1  # the top edge rises to the right: a rotated box, not an axis-aligned one


def test_blank_image_reads_nothing(ocr_reader):
    assert read(ocr_reader, Image.new("RGB", (300, 200), "white")) == []


def test_max_lines_bounds_the_lines_read(ocr_reader):
    image = render_text(["one", "two", "three", "four"], size=(400, 420))
    assert [line.text for line in read(ocr_reader, image, max_lines=2)] == ["one", "two"]


def test_an_expired_deadline_stops_between_lines(ocr_reader):
    image = render_text([PLATE, SENTENCE])
    with pytest.raises(DeadlineExceeded):
        read(ocr_reader, image, deadline=Deadline.after(0.0))


def test_probe_outputs_match_the_reference(ocr_reader, ocr_settings):
    import json

    root = ocr_settings.path("runtime.artifacts_dir")
    ref = json.loads((root / "ppocr" / "reference.json").read_text())
    for got, want in zip(ocr_reader.check_outputs(ref["inputs"]), ref["outputs"], strict=True):
        assert np.abs(got - np.asarray(want, np.float32)).max() < 1e-4


@pytest.fixture(scope="module")
def rapidocr_engine():  # type: ignore[no-untyped-def]
    """The rapidocr library from build/models (its dependencies come with requirements/dev.txt); build/models
    is on sys.path only while it loads, so no other test sees the model packages as importable."""
    added = str(PACKAGES) not in sys.path
    if added:
        sys.path.append(str(PACKAGES))
    try:
        rapidocr = need_import("rapidocr", "rapidocr (build/models) or its dependencies (requirements/dev.txt)")
        return rapidocr.RapidOCR(params={"Global.log_level": "error"})
    finally:
        if added:
            sys.path.remove(str(PACKAGES))


@pytest.mark.parametrize(
    "lines",
    [[PLATE], [PLATE, SENTENCE, "over the lazy dog 2024."], ["Invoice 0042", "Total: 13.50 EUR"]],
    ids=["plate", "three-lines", "invoice"],
)
def test_same_text_and_boxes_as_rapidocr(ocr_reader, rapidocr_engine, lines):
    image = render_text(lines)
    ours = read(ocr_reader, image)
    theirs = rapidocr_engine(np.asarray(image)[:, :, ::-1].copy())  # rapidocr takes BGR arrays
    assert [line.text for line in ours] == list(theirs.txts) == lines
    for line, box, score in zip(ours, theirs.boxes, theirs.scores, strict=True):
        assert np.abs(np.asarray(line.box) - box).max() <= 4  # px: numpy boxes vs OpenCV contours, PIL vs cv2 resizes
        assert line.score == pytest.approx(score, abs=0.01)


SIGN = ["Parking bay 12", "Exit -> Level 2", "Open 7:00-22:00 daily"]


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


@pytest.mark.parametrize(
    "make",
    [
        lambda: render_text(SIGN, size=(400, 228), font_size=16),
        lambda: ImageOps.invert(render_text(SIGN)),
        lambda: render_text(SIGN).rotate(15, expand=True, fillcolor="white"),
        lambda: jpeg(render_text(SIGN), 40),
    ],
    ids=["16px-type", "light-on-dark", "rotated-15", "jpeg-q40"],
)
def test_harder_images_read_as_rapidocr_reads_them(ocr_reader, rapidocr_engine, make):
    image = make()
    theirs = rapidocr_engine(np.asarray(image)[:, :, ::-1].copy())
    assert [line.text for line in read(ocr_reader, image)] == list(theirs.txts) == SIGN


def test_sessions_give_each_runs_memory_back(ocr_reader):
    """Inputs of any size (the page up to max_side, lines of any width): no arena keeps the largest run's
    tensors, and no shape-keyed memory plan; other models keep ONNX Runtime's defaults."""
    for session in (ocr_reader.det, ocr_reader.rec):
        options = session._session.get_session_options()
        assert options.enable_cpu_mem_arena is False
        assert options.enable_mem_pattern is False
    from edge_mm.runtime.onnx_session import OnnxSession

    default = OnnxSession(ocr_reader.det.path, 1)._session.get_session_options()
    assert default.enable_cpu_mem_arena is True
