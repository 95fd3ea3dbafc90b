"""Build progress: the ``Progress`` callback every builder reports to, and bars for the long steps
(int8 guard search, calibration, class names, verification).

Drawn on stderr only when it is a terminal (tqdm's ``disable=None``): logs and CI get the
one-line ``progress`` messages of the build and no bar characters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
Progress = Callable[[str], None]  # called with one line of text per build step


def bar(items: Iterable[T], desc: str, *, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """``items``, with a bar while they are consumed; cleared when done (the build log keeps its lines)."""
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True, disable=None)
