import pytest

from edge_mm.device import cpu_threads, ort_providers, requested_device, resolve, server_device
from edge_mm.errors import ConfigError


@pytest.mark.parametrize(
    ("requested", "cuda", "variants", "device"),
    [
        ("auto", False, {"cpu", "cuda"}, "cpu"),
        ("auto", True, {"cpu", "cuda"}, "cuda"),
        ("auto", True, {"cpu"}, "cpu"),
        ("cpu", True, {"cpu", "cuda"}, "cpu"),
        ("cuda", True, {"cpu", "cuda"}, "cuda"),
    ],
)
def test_resolve(requested, cuda, variants, device):
    choice = resolve(requested, cuda, variants)
    assert choice.device == device
    assert choice.variant == device
    assert choice.reason


def test_cuda_without_cuda_refuses():
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve("cuda", False, {"cpu", "cuda"})


def test_runtime_cuda_serves_a_model_without_a_cuda_variant_on_cpu_and_says_why():
    choice = resolve("cuda", True, {"cpu", "cpu-onnxruntime"})
    assert (choice.device, choice.variant) == ("cpu", "cpu")
    assert "runtime.device = cuda, but its artifacts have no CUDA variant" in choice.reason
    recorded = resolve("cuda", True, {"cpu"}, no_cuda_why="silero VAD serves on CPU only")
    assert recorded.reason == "runtime.device = cuda, but silero VAD serves on CPU only: serving CPU"


def test_a_models_own_cuda_without_a_cuda_variant_refuses():
    with pytest.raises(ConfigError, match="device = cuda for this model, but fp16 missed"):
        resolve("cuda", True, {"cpu"}, setting="device", no_cuda_why="fp16 missed")
    with pytest.raises(ConfigError, match="device = cuda but torch sees no CUDA device"):
        resolve("cuda", False, {"cpu", "cuda"}, setting="device")


@pytest.mark.parametrize(
    ("runtime", "model", "want"),
    [
        ("cuda", "inherit", ("cuda", "runtime.device")),
        ("cuda", "", ("cuda", "runtime.device")),
        ("cuda", "cpu", ("cpu", "device")),
        ("cpu", "auto", ("auto", "device")),
    ],
)
def test_a_models_device_overrides_the_runtime_one(runtime, model, want):
    assert requested_device(runtime, model) == want


def test_server_device_is_cuda_when_any_model_serves_there():
    assert server_device(["cpu", "cuda", "cpu"]) == "cuda"
    assert server_device(["cpu"]) == "cpu"
    assert server_device([]) == "cpu"


@pytest.mark.parametrize(
    ("device", "available", "providers", "why"),
    [
        ("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"], "serves on CPU"),
        (
            "cuda",
            ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
            "its CUDA provider",
        ),
        ("cuda", ["CPUExecutionProvider"], ["CPUExecutionProvider"], "install onnxruntime-gpu"),
    ],
)
def test_ort_providers(device, available, providers, why):
    got, reason = ort_providers(device, available)
    assert got == providers
    assert why in reason


@pytest.mark.parametrize(
    ("cores", "intra", "conc", "want"),
    [
        (2, 0, 0, (1, 2)),
        (4, 0, 0, (1, 4)),
        (16, 0, 0, (4, 4)),
        (1, 0, 0, (1, 1)),
        (8, 2, 0, (2, 4)),
        (8, 0, 2, (4, 2)),
        (8, 3, 3, (3, 3)),
    ],
)
def test_cpu_threads(cores, intra, conc, want):
    assert cpu_threads(cores, intra, conc) == want
