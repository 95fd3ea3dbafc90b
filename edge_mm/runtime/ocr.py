"""A loaded OCR artifact: PP-OCR text detection (DB) and recognition (CTC) as ONNX Runtime sessions.

The pipeline follows rapidocr 3.10's defaults (det: BGR, (x/255 - 0.5)/0.5, shorter side up to 736,
sides rounded to 32, map > 0.3 dilated 2x2, boxes scored >= 0.5 and unclipped by 1.6; rec: height 48,
batches of 6 by aspect, CTC greedy decode, lines under 0.5 left out) with numpy and Pillow only:
no OpenCV, shapely or pyclipper. Boxes are minimum-area rectangles of the map's 8-connected regions;
a rectangle's round-join offset (DB's unclip) is the rectangle grown by the offset on every side. The
180-degree direction classifier is not run: upside-down lines are not read.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge_mm.manifest import ModelEntry
from edge_mm.runtime.artifacts import load_artifact
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.probes import probe_array, probe_pixels

DET_LIMIT_SIDE = 736  # px: the shorter side is scaled up to this (rapidocr's limit_type "min")
DET_THRESH = 0.3
BOX_THRESH = 0.5
UNCLIP_RATIO = 1.6
MIN_SIZE = 3
MAX_CANDIDATES = 1000
REC_HEIGHT = 48
REC_WIDTH = 320
REC_BATCH = 6
REC_MAX_WIDTH = 48 * 64  # px: a longer, thinner line is squeezed to this (bounds one line's recognizer work)
LINE_Y_TOLERANCE = 10  # px: boxes whose tops are this close read left to right as one line


@dataclass(frozen=True)
class Line:
    """One text line: ``box`` four (x, y) corners in image px, clockwise from top-left."""

    text: str
    score: float
    box: tuple[tuple[float, float], ...]
    box_score: float


@dataclass(frozen=True)
class Region:
    box: np.ndarray  # (4, 2) float, clockwise from top-left, in the map's px
    score: float


def load_characters(path: Path) -> list[str]:
    """The recognizer's classes: CTC blank, the dictionary (one entry a line), then a space."""
    chars = path.read_text(encoding="utf-8").split("\n")
    if chars and chars[-1] == "":
        chars.pop()
    return ["", *chars, " "]


# ---- detection: preprocessing and the DB map -> boxes ----


def det_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(h, w) the detector runs at: shorter side up to 736, longer side at most ``max_side``, multiples of 32."""
    ratio = DET_LIMIT_SIDE / min(height, width) if min(height, width) < DET_LIMIT_SIDE else 1.0
    ratio = min(ratio, max_side / max(height, width))
    h = max(32, round(int(height * ratio) / 32) * 32)
    w = max(32, round(int(width * ratio) / 32) * 32)
    return h, w


def det_input(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """(1, 3, h, w) float32, BGR, scaled to [-1, 1]."""
    h, w = size
    rgb = np.asarray(image.convert("RGB").resize((w, h), Image.Resampling.BILINEAR), np.float32)
    return ((rgb[:, :, ::-1] / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None].astype(np.float32)


def dilate2x2(mask: np.ndarray) -> np.ndarray:
    """OpenCV's dilate with a 2x2 kernel (anchor at its centre): each pixel ORs itself, left, up, up-left."""
    out = mask.copy()
    out[:, 1:] |= mask[:, :-1]
    out[1:, :] |= mask[:-1, :]
    out[1:, 1:] |= mask[:-1, :-1]
    return out


def regions(mask: np.ndarray) -> list[np.ndarray]:
    """8-connected regions of a bool map as (n, 2) arrays of (x, y) run-end points, in scan order.

    Union-find over horizontal runs: Python work grows with the number of runs, not pixels.
    """
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    rows_s, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)  # exclusive; same row order as starts
    parent = list(range(len(starts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_first = np.searchsorted(rows_s, np.arange(mask.shape[0] + 1))
    for y in range(1, mask.shape[0]):
        a0, a1, b0, b1 = row_first[y - 1], row_first[y], row_first[y], row_first[y + 1]
        i = a0
        for j in range(b0, b1):  # runs of row y against row y - 1; 8-connected: touching diagonally counts
            while i < a1 and ends[i] < starts[j]:
                i += 1
            k = i
            while k < a1 and starts[k] <= ends[j]:
                ri, rj = find(k), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
                k += 1
    groups: dict[int, list[int]] = {}
    for j in range(len(starts)):
        groups.setdefault(find(j), []).append(j)
    out = []
    for members in groups.values():
        idx = np.array(members)
        ys = rows_s[idx]
        pts = np.concatenate([np.stack([starts[idx], ys], 1), np.stack([ends[idx] - 1, ys], 1)])
        out.append(pts.astype(np.float64))
    return out


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain: the hull of (n, 2) points, counter-clockwise."""
    pts = sorted({(float(x), float(y)) for x, y in points})
    if len(pts) <= 2:
        return np.array(pts)

    def half(seq: list[tuple[float, float]]) -> list[tuple[float, float]]:
        h: list[tuple[float, float]] = []
        for p in seq:
            while (
                len(h) >= 2
                and (h[-1][0] - h[-2][0]) * (p[1] - h[-2][1]) - (h[-1][1] - h[-2][1]) * (p[0] - h[-2][0]) <= 0
            ):
                h.pop()
            h.append(p)
        return h

    lower, upper = half(pts), half(pts[::-1])
    return np.array(lower[:-1] + upper[:-1])


def min_area_rect(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre, (along, across) half-sizes, (2, 2) unit axes) of the smallest rectangle around ``points``."""
    hull = convex_hull(points)
    if len(hull) < 3:
        lo, hi = points.min(0), points.max(0)
        return (lo + hi) / 2, (hi - lo) / 2, np.eye(2)
    edges = np.roll(hull, -1, axis=0) - hull
    angles = np.unique(np.mod(np.arctan2(edges[:, 1], edges[:, 0]), np.pi / 2))
    best: tuple[float, Any] | None = None
    for a in angles:
        axes = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
        proj = hull @ axes.T
        lo, hi = proj.min(0), proj.max(0)
        area = float(np.prod(hi - lo))
        if best is None or area < best[0] - 1e-9:
            best = (area, (axes, lo, hi))
    assert best is not None
    axes, lo, hi = best[1]
    return ((lo + hi) / 2) @ axes, (hi - lo) / 2, axes


def rect_corners(centre: np.ndarray, half: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """(4, 2) corners clockwise (y down) from the top-left."""
    signs = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)
    pts = centre + (signs * half) @ axes
    return order_clockwise(pts)


def order_clockwise(pts: np.ndarray) -> np.ndarray:
    """Top-left, top-right, bottom-right, bottom-left (as rapidocr's order_points_clockwise)."""
    xs = pts[np.argsort(pts[:, 0], kind="stable")]
    left, right = xs[:2], xs[2:]
    tl, bl = left[np.argsort(left[:, 1], kind="stable")]
    tr, br = right[np.argsort(right[:, 1], kind="stable")]
    return np.array([tl, tr, br, bl])


def box_score(prob: np.ndarray, corners: np.ndarray) -> float:
    """Mean probability over the map's pixels inside the quadrilateral ``corners``."""
    h, w = prob.shape
    x0, y0 = np.clip(np.floor(corners.min(0)).astype(int), 0, [w - 1, h - 1])
    x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int), 0, [w - 1, h - 1])
    ys, xs = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    inside = np.ones(xs.shape, bool)
    for k in range(4):
        (ax, ay), (bx, by) = corners[k], corners[(k + 1) % 4]
        inside &= (bx - ax) * (ys - ay) - (by - ay) * (xs - ax) >= -0.5 * math.hypot(bx - ax, by - ay)
    patch = prob[y0 : y1 + 1, x0 : x1 + 1]
    return float(patch[inside].mean()) if inside.any() else 0.0


def boxes_from_map(prob: np.ndarray, max_regions: int = MAX_CANDIDATES) -> list[Region]:
    """DB post-processing on a (h, w) probability map: scored, unclipped rectangles in map px."""
    found = []
    for pts in regions(dilate2x2(prob > DET_THRESH))[:max_regions]:
        centre, half, axes = min_area_rect(pts)
        if 2 * half.min() < MIN_SIZE:
            continue
        corners = rect_corners(centre, half, axes)
        score = box_score(prob, corners)
        if score < BOX_THRESH:
            continue
        w, h = 2 * half
        grow = w * h * UNCLIP_RATIO / (2 * (w + h))  # the offset distance DB unclips by: area * ratio / perimeter
        half = half + grow
        if 2 * half.min() < MIN_SIZE + 2:
            continue
        found.append(Region(rect_corners(centre, half, axes), score))
    return found


def reading_order(regions_: list[Region]) -> list[Region]:
    """Top to bottom; boxes whose tops are within 10 px read left to right (rapidocr's sorted_boxes)."""
    if not regions_:
        return []
    by_y = sorted(regions_, key=lambda r: r.box[0, 1])
    line, prev, keyed = 0, by_y[0].box[0, 1], []
    for r in by_y:
        if r.box[0, 1] - prev >= LINE_Y_TOLERANCE:
            line += 1
        prev = r.box[0, 1]
        keyed.append((line, r.box[0, 0], r))
    return [r for _, _, r in sorted(keyed, key=lambda k: (k[0], k[1]))]


# ---- recognition: crops, batches and CTC decoding ----


def crop_line(image: Image.Image, box: np.ndarray) -> Image.Image:
    """The quadrilateral ``box`` warped upright (rapidocr's get_rotate_crop_image); tall crops turn 90 degrees."""
    w = max(1, int(max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3]))))
    h = max(1, int(max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2]))))
    quad = tuple(float(v) for p in (box[0], box[3], box[2], box[1]) for v in p)  # PIL: UL, LL, LR, UR
    crop = image.transform((w, h), Image.Transform.QUAD, quad, Image.Resampling.BICUBIC)
    return crop.transpose(Image.Transpose.ROTATE_90) if h / w >= 1.5 else crop


def rec_input(crops: list[Image.Image]) -> np.ndarray:
    """(n, 3, 48, W) float32 BGR in [-1, 1]; each crop keeps its aspect (up to W = 3072), zero-padded on the right."""
    max_ratio = max(REC_WIDTH / REC_HEIGHT, *(c.width / c.height for c in crops))
    width = min(int(REC_HEIGHT * max_ratio), REC_MAX_WIDTH)
    batch = np.zeros((len(crops), 3, REC_HEIGHT, width), np.float32)
    for i, crop in enumerate(crops):
        w = min(width, math.ceil(REC_HEIGHT * crop.width / crop.height))
        arr = np.asarray(crop.convert("RGB").resize((w, REC_HEIGHT), Image.Resampling.BILINEAR), np.float32)
        batch[i, :, :, :w] = ((arr[:, :, ::-1] / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
    return batch


def ctc_decode(probs: np.ndarray, characters: list[str]) -> list[tuple[str, float]]:
    """Greedy CTC on (n, steps, classes): repeats merged, blanks dropped; score = mean kept-step probability."""
    best, conf = probs.argmax(axis=2), probs.max(axis=2)
    out = []
    for idx, p in zip(best, conf, strict=True):
        keep = np.ones(len(idx), bool)
        keep[1:] = idx[1:] != idx[:-1]
        keep &= idx != 0
        text = "".join(characters[i] for i in idx[keep])
        out.append((text, round(float(p[keep].mean()), 5) if keep.any() else 0.0))
    return out


@dataclass
class OcrReader:
    """:meth:`read` is thread-safe (the sessions keep no state)."""

    name: str
    entry: ModelEntry
    det: Any  # (1, 3, h, w) -> (1, 1, h, w) text probability
    rec: Any  # (n, 3, 48, W) -> (n, W / 8, classes) probabilities
    characters: list[str]
    device: str = "cpu"

    @classmethod
    def load(cls, name: str, entry: ModelEntry, root: Path, device: str, variant: str, max_batch: int) -> OcrReader:
        chosen = entry.variants[variant]
        # no arena: the detector runs at any size up to max_side and the recognizer at any line width; an
        # arena kept the largest run's tensors (a 900x420 page read 6 times: RSS 973 -> 707 MB without it)
        det, rec = (
            load_artifact(dataclasses.replace(chosen, files={"model": chosen.files[n]}), root, device, arena=False)
            for n in ("det", "rec")
        )
        return cls(name, entry, det, rec, load_characters(chosen.files["characters"].resolve(root)), device)

    def detect(self, image: Image.Image, max_side: int) -> list[Region]:
        """Text boxes in ``image`` px, in reading order."""
        h, w = det_size(image.height, image.width, max_side)
        prob = np.asarray(self.det(det_input(image, (h, w))))[0, 0]
        sx, sy = image.width / w, image.height / h
        out = []
        for r in boxes_from_map(prob):
            box = np.clip(np.round(r.box * [sx, sy]), 0, [image.width, image.height])
            box = order_clockwise(box)
            if np.linalg.norm(box[0] - box[1]) <= 3 or np.linalg.norm(box[0] - box[3]) <= 3:
                continue
            out.append(Region(box, r.score))
        return reading_order(out)

    def recognize(self, crops: list[Image.Image], deadline: Deadline | None = None) -> list[tuple[str, float]]:
        """Text and score per crop; batches of similar aspect, the deadline checked between batches."""
        order = sorted(range(len(crops)), key=lambda i: crops[i].width / crops[i].height)
        found: dict[int, tuple[str, float]] = {}
        for start in range(0, len(order), REC_BATCH):
            if deadline is not None:
                deadline.check("text recognition")
            chunk = order[start : start + REC_BATCH]
            probs = np.asarray(self.rec(rec_input([crops[i] for i in chunk])))
            found.update(zip(chunk, ctc_decode(probs, self.characters), strict=True))
        return [found[i] for i in range(len(crops))]

    def read(
        self,
        image: Image.Image,
        *,
        max_side: int,
        max_lines: int,
        min_score: float = 0.5,
        deadline: Deadline | None = None,
    ) -> list[Line]:
        """Text lines in reading order: at most ``max_lines`` boxes are read; lines under ``min_score`` are left out."""
        rgb = image.convert("RGB")
        found = self.detect(rgb, max_side)[:max_lines]
        if deadline is not None:
            deadline.check("text detection")
        texts = self.recognize([crop_line(rgb, r.box) for r in found], deadline)
        return [
            Line(text, score, tuple((float(x), float(y)) for x, y in r.box), r.score)
            for r, (text, score) in zip(found, texts, strict=True)
            if text and score >= min_score
        ]

    def check_outputs(self, inputs: list[dict[str, Any]]) -> list[np.ndarray]:
        """Probe arrays through det (the map) and rec (each step's best class probability)."""
        outs = []
        for p in inputs:
            x = probe_array(*p["shape"])
            if p["net"] == "det":
                outs.append(np.asarray(self.det(x), np.float32).ravel())
            else:
                outs.append(np.asarray(self.rec(x), np.float32).max(2).ravel())
        return outs

    def warm(self) -> float:
        t0 = time.perf_counter()
        # small (the detector at 320x128): with no arena a large warm-up keeps nothing for later runs
        self.read(Image.fromarray(probe_pixels(120, 320)), max_side=320, max_lines=4)
        return (time.perf_counter() - t0) * 1000
