"""Writes tests/media/stream_clip.mp4: the astronaut's face (scikit-image's photo) sliding into a
plain 320x240 frame, staying, and sliding out; H.264 (libx264), 10 fps, 10 s, a key frame every
second (an RTSP client joining late starts within a second). The stream tests expect a face from
about 2.5 s to 7.5 s and none in the first and last 2 s.

Run from the repository root: ``.venv/bin/python tests/media/make_stream_clip.py``.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image
from skimage import data

OUT = Path(__file__).with_name("stream_clip.mp4")
SIZE = (320, 240)
FPS = 10
SECONDS = 10
BACKGROUND = (96, 112, 104)


def head() -> Image.Image:
    """Her head and shoulders (her face spans about x 180-270, y 60-175 in the 512x512 photo), 120x144."""
    return Image.fromarray(data.astronaut()).crop((150, 30, 300, 210)).resize((120, 144), Image.BILINEAR)


def face_x(t: float) -> int | None:
    """The head's left edge (px) at ``t`` s, or None when it is out of the frame."""
    if t < 2.0 or t >= 8.0:
        return None
    if t < 3.5:  # slides in from the left
        return int(-120 + (t - 2.0) / 1.5 * 220)
    if t < 6.5:
        return 100
    return int(100 + (t - 6.5) / 1.5 * 220)  # slides out to the right


def main() -> None:
    face = head()
    with av.open(str(OUT), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"crf": "30", "preset": "veryfast", "g": str(FPS)})
        stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
        for i in range(FPS * SECONDS):
            canvas = Image.new("RGB", SIZE, BACKGROUND)
            x = face_x(i / FPS)
            if x is not None:
                canvas.paste(face, (x, 60))
            frame = av.VideoFrame.from_ndarray(np.asarray(canvas), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    print(f"{OUT}: {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
