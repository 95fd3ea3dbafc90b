"""Device policy: which device serves, and which artifact variant it loads."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from edge_mm.errors import ConfigError

INHERIT = "inherit"  # a model's ``device``: take ``runtime.device``
ORT_CUDA = "CUDAExecutionProvider"
ORT_CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # "cpu" | "cuda"
    variant: str  # key into the manifest's variants
    reason: str


def requested_device(runtime_device: str, model_device: str) -> tuple[str, str]:
    """(device asked for, the setting that asked): the model's own ``device`` unless it is ``inherit`` (or empty)."""
    if model_device in ("", INHERIT):
        return runtime_device, "runtime.device"
    return model_device, "device"


def resolve(
    requested: str, cuda_available: bool, variants: set[str], *, setting: str = "runtime.device", no_cuda_why: str = ""
) -> DeviceChoice:
    """Pick the device for one model.

    ``auto``: CUDA when available and the model has a CUDA variant, else CPU.
    ``cuda`` as ``runtime.device``: refuse to start without a CUDA device; with one, every model that
    has a CUDA variant serves on it and the others stay on CPU, the reason saying why (``no_cuda_why``:
    what the build recorded, e.g. a kind built for CPU only or an fp16 form refused at build time).
    ``cuda`` as a model's own ``device`` (``setting = "device"``): that model serves on CUDA or refuses.
    ``cpu``: always CPU.
    """
    if requested == "cpu":
        return DeviceChoice("cpu", "cpu", f"{setting} = cpu")
    if requested not in ("auto", "cuda"):
        raise ConfigError(f"{setting}: {requested!r} is not allowed; use auto, cpu or cuda")
    if requested == "cuda" and not cuda_available:
        raise ConfigError(
            f"{setting} = cuda but torch sees no CUDA device (torch.cuda.is_available() is False); "
            "use device = auto or cpu, or run on a machine with an NVIDIA GPU and the CUDA build"
        )
    why = no_cuda_why or "its artifacts have no CUDA variant (built without a GPU, or its kind builds none)"
    if requested == "cuda" and "cuda" not in variants and setting != "runtime.device":
        raise ConfigError(
            f"device = cuda for this model, but {why}; run 'edge-mm build' on a CUDA machine, or use inherit, auto or cpu"
        )
    if cuda_available and "cuda" in variants:
        return DeviceChoice("cuda", "cuda", f"{setting} = {requested}: CUDA is available and a CUDA variant was built")
    if cuda_available:
        return DeviceChoice("cpu", "cpu", f"{setting} = {requested}, but {why}: serving CPU")
    return DeviceChoice("cpu", "cpu", f"{setting} = auto: no CUDA device; serving the CPU variant")


def server_device(devices: Collection[str]) -> str:
    """``/info``'s top-level ``device``: ``cuda`` when any model serves on CUDA, else ``cpu``.

    Each model's own device, and why, is in ``/info``'s ``models``; this is the one value that says
    whether the server uses a GPU at all.
    """
    return "cuda" if "cuda" in devices else "cpu"


def ort_providers(device: str, available: Collection[str]) -> tuple[list[str], str]:
    """(ONNX Runtime execution providers, why) for a session on ``device``, given
    ``onnxruntime.get_available_providers()``.

    CUDA's provider comes first with the CPU one behind it (ONNX Runtime places the nodes CUDA lacks
    there) when the device is ``cuda`` and this onnxruntime has it (the onnxruntime-gpu package);
    otherwise CPU only.
    """
    if device != "cuda":
        return [ORT_CPU], "the model serves on CPU"
    if ORT_CUDA in available:
        return [ORT_CUDA, ORT_CPU], "the model serves on CUDA and onnxruntime has its CUDA provider"
    return [ORT_CPU], f"this onnxruntime has no {ORT_CUDA} (install onnxruntime-gpu): CPU"


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
