"""Int8 fidelity on every CPU path: the built artifacts' ONNX Runtime variants, natively and under qemu-user.

    python -m bench.cpu_paths [--config settings.toml] [--cpus native,mask:avx2,mask:avx512] [--text-samples 16]

For each CPU (``native``: this machine; ``aarch64`` or ``aarch64:CPU`` (e.g. ``cortex-a72``, a
Raspberry Pi 4 without the dot product): linux/arm64 under qemu-aarch64, from scripts/arm64_python.sh;
``mask:avx2`` or ``mask:avx512``: this CPU at native speed with AVX-512, VNNI and AMX (or VNNI and AMX)
hidden from ``cpuid`` (scripts/cpumask.sh), so the kernels take that CPU's code path;
any other name: ``qemu-x86_64 -cpu NAME``, e.g. ``Haswell`` for an
AVX2-only x86 without VNNI) a child process loads each int8 model's ONNX Runtime variants
the way the server does and replays the start-up gate's fidelity samples (fidelity.json) on them:
figures against the stored fp32 outputs, the gates, and the largest difference from the native
outputs. The child reads its CPU with cpuid, so an emulated or masked child reports that CPU's int8
path. Emulated timings mean nothing and none are taken; emulated fidelity is what the kernels compute.

qemu 7.2's TCG emulates up to AVX2 (no AVX-512), so under qemu the non-VNNI x86 path is Haswell;
AVX-512BW without VNNI (``vpmaddubsw`` on 512-bit registers) is reached only with ``mask:avx512``.
Writes bench/results/cpu_paths.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import machine, machine_line
from edge_mm.config import load_settings
from edge_mm.manifest import ORT_7BIT_VARIANT, ORT_FP32_VARIANT, ORT_VARIANT, read_manifest
from edge_mm.runtime import cpu_features, fidelity_gate
from edge_mm.runtime.probes import image_from_base64

ROOT = Path(__file__).resolve().parents[1]
ARM64_PYTHON = ROOT / "build" / "arm64" / "python"  # written by scripts/arm64_python.sh
INT8_VARIANTS = (ORT_VARIANT, ORT_7BIT_VARIANT, ORT_FP32_VARIANT)


def child(
    config: str,
    text_samples: int,
    image_samples: int,
    models: set[str] | None = None,
    variants: set[str] | None = None,
    timed: bool = False,
) -> dict[str, Any]:
    """This process's CPU and, per model and ONNX Runtime variant, the gate's figures and the raw outputs
    (and with ``timed``, the forward pass's median ms at batch 1 and 8: never under emulation)."""
    from edge_mm.runtime.artifacts import set_cpu_threads
    from edge_mm.runtime.image_classifier import ImageClassifier
    from edge_mm.runtime.text_model import TextModel

    settings = load_settings(config)
    root = settings.path("runtime.artifacts_dir")
    manifest = read_manifest(root)
    set_cpu_threads(1)
    out: dict[str, Any] = {"cpu": cpu_features.detect().describe(), "models": {}}
    for name, entry in manifest.models.items():
        if fidelity_gate.FILE_KEY not in entry.files or (models and name not in models):
            continue
        samples = fidelity_gate.Samples.read(entry.files[fidelity_gate.FILE_KEY].resolve(root))
        n = image_samples if samples.metric == "classifier" and samples.labels else text_samples
        samples = fidelity_gate.Samples(
            samples.inputs[:n], samples.fp32[:n], samples.metric, samples.gates, samples.labels
        )
        per: dict[str, Any] = {}
        runners: dict[str, Any] = {}
        for variant in INT8_VARIANTS:
            if variant not in entry.variants or (variants and variant not in variants):
                continue
            load = ImageClassifier.load if entry.task == "image-classification" else TextModel.load  # no web stack
            runner = runners[variant] = load(name, entry, root, "cpu", variant, 8)
            outputs = runner.check_outputs(samples.inputs)
            figs = fidelity_gate.figures(samples, outputs)
            per[variant] = {
                "dtype": entry.variants[variant].dtype,
                "samples": len(samples.inputs),
                "figures": figs,
                "misses": fidelity_gate.misses(samples, figs),
                "outputs": [np.asarray(o, dtype=np.float32).ravel().tolist() for o in outputs],
            }
        if timed:
            for variant, ms in _forward_ms(runners, samples.inputs).items():
                per[variant]["ms"] = ms
        out["models"][name] = {"gates": samples.gates, "variants": per}
    return out


def _forward_ms(runners: dict[str, Any], inputs: list[Any], rounds: int = 7) -> dict[str, dict[str, float]]:
    """Median ms of one forward pass at batch 1 and 8 per variant, one thread, the variants taking turns
    round by round (so a noisy moment costs each alike). Images are decoded and preprocessed once."""
    times: dict[str, dict[int, list[float]]] = {v: {1: [], 8: []} for v in runners}
    for _ in range(rounds):
        for variant, runner in runners.items():
            for batch, reps in ((1, 10), (8, 2)):
                call = _pass(runner, inputs[:batch])
                call()
                for _ in range(reps):
                    t0 = time.perf_counter()
                    call()
                    times[variant][batch].append((time.perf_counter() - t0) * 1000)
    return {v: {f"b{b}": round(float(np.median(t)), 2) for b, t in per.items()} for v, per in times.items()}


def _pass(runner: Any, inputs: list[Any]) -> Any:
    """One forward pass over ``inputs`` as a call: an image classifier's prepared items, a text model's sentences."""
    if hasattr(runner, "prepare"):
        items = runner.prepare([image_from_base64(s) for s in inputs])
        return lambda: runner.forward_now(items)
    return lambda: runner.check_outputs(inputs)


def run_on(cpu: str, config: str, text_samples: int, image_samples: int, only: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.cpu_paths", "--child", "--config", config, *only]
    cmd += ["--text-samples", str(text_samples), "--image-samples", str(image_samples)]
    if cpu == "native" or cpu.startswith("mask:"):  # real kernels at real speed: timed
        cmd.append("--timed")
    env = {k: v for k, v in os.environ.items() if k != cpu_features.ENV_OVERRIDE}
    if cpu.startswith("aarch64"):  # emulated arm64 Python (scripts/arm64_python.sh); "aarch64:cortex-a72" picks the CPU
        if not ARM64_PYTHON.exists():
            raise SystemExit(f"{ARM64_PYTHON} is missing: run scripts/arm64_python.sh first")
        cmd = [str(ARM64_PYTHON), *cmd[1:]]
        env["PYTHONPATH"] = str(ROOT)
        env["EDGE_MM_ARM64_CPU"] = cpu.partition(":")[2]
    elif cpu.startswith("mask:"):  # native speed, features hidden from cpuid
        cmd = ["bash", str(ROOT / "scripts" / "cpumask.sh"), cpu.partition(":")[2], *cmd]
    elif cpu != "native":
        qemu = shutil.which("qemu-x86_64")
        if qemu is None:
            raise SystemExit("qemu-x86_64 is not installed (Debian: qemu-user)")
        cmd = [qemu, "-cpu", cpu, *cmd]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = round(time.perf_counter() - t0, 1)
    if proc.returncode != 0:  # recorded, and the other CPUs still run
        error = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        print(f"{cpu}: child failed ({proc.returncode}): {error}", file=sys.stderr)
        return {"label": cpu, "wall_s": wall, "error": f"exit {proc.returncode}: {error}", "models": {}}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["label"], result["wall_s"] = cpu, wall
    return result


def compare(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per CPU, model and variant: figures, verdict, and the largest difference from the first run."""
    base = runs[0]
    rows = []
    for run in runs:
        for model, m in run["models"].items():
            for variant, v in m["variants"].items():
                ref = base["models"][model]["variants"][variant]["outputs"]
                diff = max(float(np.abs(np.subtract(a, b)).max()) for a, b in zip(ref, v["outputs"], strict=True))
                rows.append(
                    {
                        "cpu": run["label"],
                        "cpu_model": run["cpu"]["model"],
                        "int8_path": run["cpu"]["path"],
                        "flags": run["cpu"]["flags"],
                        "model": model,
                        "variant": variant,
                        "dtype": v["dtype"],
                        "samples": v["samples"],
                        "figures": v["figures"],
                        "gates": m["gates"],
                        "passes": not v["misses"],
                        "max_abs_vs_first": diff,
                        "ms": v.get("ms"),
                        "fp32_ms": m["variants"].get(ORT_FP32_VARIANT, {}).get("ms"),
                    }
                )
    return rows


def render(result: dict[str, Any]) -> str:
    lines = [
        f"Command: `{result['command']}`",
        "",
        f"Run {result['when']}. {machine_line(result['machine'])}",
        "Emulated CPUs run under qemu-user (`qemu-x86_64 -cpu NAME`): their fidelity is what the int8 kernels "
        "compute on that CPU model; no timing is taken under emulation. `mask:PATH` runs natively with the "
        "features above PATH hidden from cpuid (scripts/cpumask.sh). Each child reads its CPU with cpuid.",
        "",
        "Timed CPUs (native, mask:): median ms of one forward pass at batch 1 / 8 on one thread, the variants "
        "taking turns; x fp32: the fp32 variant's time over this one's, in the same process.",
        "",
        "| CPU | int8 path (flags) | model | variant | samples | figures vs fp32 | gates | verdict | max abs vs "
        f"{result['rows'][0]['cpu'] if result['rows'] else 'first'} | ms b1 / b8 | x fp32 b1 / b8 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        figs = ", ".join(f"{k} {v}" for k, v in r["figures"].items())
        gates = ", ".join(f"{k} {v}" for k, v in r["gates"].items())
        lines.append(
            f"| {r['cpu']}: {r['cpu_model']} | {r['int8_path']} ({' '.join(r['flags'])}) | {r['model']} | "
            f"{r['variant']} ({r['dtype']}) | {r['samples']} | {figs} | {gates} | "
            f"{'meets' if r['passes'] else 'MISSES'} | {r['max_abs_vs_first']:.2e} | {_ms(r)} |"
        )
    for label, error in result.get("errors", {}).items():
        lines += ["", f"{label}: the emulated run failed ({error})."]
    lines += ["", f"Wall time per CPU (s): {', '.join(f'{k} {v}' for k, v in result['wall_s'].items())}.", ""]
    return "\n".join(lines)


def _ms(row: dict[str, Any]) -> str:
    ms, fp32 = row.get("ms"), row.get("fp32_ms")
    if not ms:
        return "- | -"
    speed = f"{fp32['b1'] / ms['b1']:.2f}x / {fp32['b8'] / ms['b8']:.2f}x" if fp32 else "-"
    return f"{ms['b1']} / {ms['b8']} | {speed}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="settings.toml")
    p.add_argument(
        "--cpus",
        default="native,mask:avx2,mask:avx512",
        help="native, mask:avx2|avx512, aarch64[:CPU] and/or qemu -cpu names, comma-separated",
    )
    p.add_argument("--text-samples", type=int, default=16, help="sentences per text model (of the gate's 64)")
    p.add_argument("--image-samples", type=int, default=24, help="held-out images per image model (of 24)")
    p.add_argument("--models", default="", help="only these models, comma-separated (default: every int8 model)")
    p.add_argument("--variants", default="", help="only these variants, comma-separated (an emulated run is slow)")
    p.add_argument("--out", default="cpu_paths")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--timed", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        models, variants = (set(filter(None, x.split(","))) for x in (a.models, a.variants))
        print(json.dumps(child(a.config, a.text_samples, a.image_samples, models, variants, a.timed)))
        return
    only = [f"--models={a.models}", f"--variants={a.variants}"]
    out = ROOT / "bench" / "results"
    runs: list[dict[str, Any]] = []
    for cpu in a.cpus.split(","):  # the files are rewritten after each CPU: an emulated run takes minutes
        runs.append(run_on(cpu, a.config, a.text_samples, a.image_samples, only))
        result = {
            "command": "python -m bench.cpu_paths " + " ".join(sys.argv[1:]),
            "when": time.strftime("%Y-%m-%d %H:%M"),
            "machine": machine(),
            "rows": compare([r for r in runs if "error" not in r]),
            "errors": {r["label"]: r["error"] for r in runs if "error" in r},
            "wall_s": {r["label"]: r["wall_s"] for r in runs},
        }
        (out / f"{a.out}.json").write_text(json.dumps(result, indent=2))
        md = render(result)
        (out / f"{a.out}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
