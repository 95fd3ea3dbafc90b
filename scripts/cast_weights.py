"""Cast the floating-point tensors of the checkpoints under a folder to fp16 or back to fp32, in place.

    python scripts/cast_weights.py FOLDER half|float

For scripts/gpu_check_carried.sh: weights travel to a GPU machine as fp16 and are widened there.
Handles Hugging Face ``model.safetensors`` and the EfficientNet-Lite ``.pth`` state dict.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def cast(t: torch.Tensor, mode: str) -> torch.Tensor:
    if not t.is_floating_point():
        return t
    return (t.half() if mode == "half" else t.float()).contiguous()


def main(root: Path, mode: str) -> None:
    for path in root.rglob("model.safetensors"):
        save_file({k: cast(v, mode) for k, v in load_file(path).items()}, path, metadata={"format": "pt"})
        print(f"{path} -> {mode}")
    for path in root.rglob("efficientnet-lite0-*.pth"):
        torch.save({k: cast(v, mode) for k, v in torch.load(path, map_location="cpu").items()}, path)
        print(f"{path} -> {mode}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
