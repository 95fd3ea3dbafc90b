"""Where the accelerator variant (manifest key ``cuda``) is traced, and in which dtype.

Builders take ``accelerator="cuda"`` (fp16, only when a GPU is present). ``"cpu"`` lets the
CPU stand in with bfloat16, so the default test run goes through the same accelerator code
(trace on the device, compare with the fp32 reference, refuse a form that misses the model's
fidelity targets as int8 is refused, save it with its own reference sample) on a machine
without a GPU. A refused or skipped form leaves the model CPU-only; the entry's verification
says why (manifest.NO_CUDA_KEY), and the runtime reports it.
A stand-in variant is for tests: its notes say so and it is never faster than the CPU one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ACCELERATOR_DTYPES = {"cuda": torch.float16, "cpu": torch.bfloat16}
NO_GPU = "built on a machine without CUDA: run 'edge-mm build' on a CUDA machine to add the fp16 form"


@dataclass(frozen=True)
class Accelerator:
    """The device the accelerator variant is traced on, and the dtype of its weights and inputs."""

    device: torch.device
    dtype: torch.dtype

    @property
    def dtype_name(self) -> str:
        """``float16`` / ``bfloat16``, as the manifest records it."""
        return str(self.dtype).removeprefix("torch.")

    @property
    def notes(self) -> list[str]:
        if self.device.type == "cuda":
            return ["traced on CUDA"]
        return [f"traced on {self.device.type} standing in for CUDA (tests only)"]

    @property
    def short_dtype(self) -> str:
        """``fp16`` / ``bf16``."""
        return {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(self.dtype, self.dtype_name)

    @property
    def check_tolerance(self) -> float:
        """Largest abs difference `edge-mm check` allows between this form and its own reference
        (recorded with it): fp16 kernels differ between GPUs and batch shapes more than fp32 ones."""
        return {torch.float16: 5e-2, torch.bfloat16: 1e-1}.get(self.dtype, 2e-2)

    def refusal(self, misses: list[str]) -> str:
        """Why the build writes no CUDA variant when this form misses the model's fidelity targets."""
        return (
            f"the {self.short_dtype} form traced on {self.device.type} misses its fidelity targets: {'; '.join(misses)}"
        )

    @property
    def figure_key(self) -> str:
        """The verification key of the accelerator-vs-fp32 figures, e.g. ``cuda_fp16_vs_fp32``."""
        return f"{self.device.type}_{self.short_dtype}_vs_fp32"


def resolve_accelerator(name: str | None) -> Accelerator | None:
    """The accelerator to build for, or None: ``name`` None, or ``"cuda"`` where torch sees no GPU."""
    if name is None:
        return None
    if name not in ACCELERATOR_DTYPES:
        raise ValueError(f"accelerator {name!r}: expected one of {sorted(ACCELERATOR_DTYPES)} or None")
    if name == "cuda" and not torch.cuda.is_available():
        return None
    return Accelerator(torch.device(name), ACCELERATOR_DTYPES[name])
