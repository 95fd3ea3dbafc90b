"""Builders for the image, face, audio and zero-shot tasks (build/pipeline.py picks them up)."""

from __future__ import annotations

from edge_mm.build.detection import build_object_detector
from edge_mm.build.face_vad import build_face_detector, build_voice_activity
from edge_mm.build.image_classifier import build_image_classifier
from edge_mm.build.zero_shot_image import build_zero_shot_image

VISION_BUILDERS = {
    "image-classification": build_image_classifier,
    "face-detection": build_face_detector,
    "voice-activity": build_voice_activity,
    "zero-shot-image": build_zero_shot_image,
    "object-detection": build_object_detector,
}
