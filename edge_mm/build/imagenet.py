"""ImageNet-1k class names, in class-index order (index 0 = "tench").

The names are the first WordNet lemma of each synset in the standard ILSVRC-2012
order. Two lemmas repeat ("crane" at 134 and 517, "maillot" at 638 and 639), as in
every lemma-based label list; callers that need unique names must add the index.
"""

from __future__ import annotations

from pathlib import Path

LABELS_PATH = Path(__file__).with_name("data") / "imagenet_labels.txt"
NUM_CLASSES = 1000


def load_imagenet_labels(path: Path = LABELS_PATH) -> list[str]:
    """Return the 1000 class names; raise ``ValueError`` if the file is not 1000 lines."""
    labels = path.read_text(encoding="utf-8").splitlines()
    if len(labels) != NUM_CLASSES or not all(labels):
        raise ValueError(f"{path}: expected {NUM_CLASSES} non-empty lines, got {len(labels)}")
    return labels
