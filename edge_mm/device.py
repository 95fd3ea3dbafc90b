"""Device policy: which device serves, and which artifact variant it loads."""

from __future__ import annotations

from dataclasses import dataclass

from edge_mm.errors import ConfigError


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # "cpu" | "cuda"
    variant: str  # key into the manifest's variants
    reason: str


def resolve(requested: str, cuda_available: bool, variants: set[str]) -> DeviceChoice:
    """Pick the device for one model.

    ``auto``: CUDA when available and the model has a CUDA variant, else CPU.
    ``cuda``: CUDA or refuse (no silent fallback). ``cpu``: always CPU.
    """
    if requested == "cpu":
        return DeviceChoice("cpu", "cpu", "device = cpu in settings")
    if requested == "cuda":
        if not cuda_available:
            raise ConfigError(
                "runtime.device = cuda but torch sees no CUDA device (torch.cuda.is_available() is False); "
                "use device = auto or cpu, or run on a machine with an NVIDIA GPU and the CUDA build"
            )
        if "cuda" not in variants:
            raise ConfigError(
                "runtime.device = cuda but the artifacts have no CUDA variant; run 'edge-mm build' on a CUDA machine"
            )
        return DeviceChoice("cuda", "cuda", "device = cuda in settings")
    if requested != "auto":
        raise ConfigError(f"runtime.device: {requested!r} is not allowed; use auto, cpu or cuda")
    if cuda_available and "cuda" in variants:
        return DeviceChoice("cuda", "cuda", "auto: CUDA is available and a CUDA variant was built")
    if cuda_available:
        return DeviceChoice("cpu", "cpu", "auto: CUDA is available but no CUDA variant was built; serving CPU")
    return DeviceChoice("cpu", "cpu", "auto: no CUDA device; serving the CPU variant")


def cpu_threads(cores: int, intra: int, concurrent: int) -> tuple[int, int]:
    """(intra-op threads, concurrent inferences) with intra x concurrent <= cores.

    0 means derive. Measured on 2 cores (bench/results/threads_sweep.md, MiniLM int8 with
    micro-batching): 2 inferences x 1 thread served 313 req/s at 8 clients against 224 for
    1 x 2 threads, with a tighter p99; small int8 GEMMs barely use a second thread. So
    derive up to 4 concurrent inferences and give each the cores that are left.
    """
    cores = max(1, cores)
    if intra <= 0 and concurrent <= 0:
        concurrent = min(cores, 4)
        intra = max(1, cores // concurrent)
    elif intra <= 0:
        intra = max(1, cores // concurrent)
    elif concurrent <= 0:
        concurrent = max(1, cores // intra)
    return intra, concurrent
