import pytest

from edge_mm.device import cpu_threads, resolve
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


def test_cuda_without_cuda_variant_refuses():
    with pytest.raises(ConfigError, match="no CUDA variant"):
        resolve("cuda", True, {"cpu"})


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
