"""The ONNX Runtime backend at build time: the measured choice, kept-layer matching, gates, the manifest record."""

from __future__ import annotations

import io
import math

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from edge_mm.build import onnx_backend
from edge_mm.build.all_models import build_all
from edge_mm.build.errors import BuildError
from edge_mm.build.onnx_backend import Candidate, choose_backend
from edge_mm.config import load_settings
from edge_mm.manifest import ORT_7BIT_VARIANT, ORT_FP32_VARIANT, ORT_VARIANT, read_manifest
from edge_mm.runtime import cpu_features
from tests.conftest import tiny_settings_toml


def cand(b1: float, b8: float, passes: bool = True, variant: str = "cpu") -> Candidate:
    return Candidate(
        variant, passes, [] if passes else ["min_cosine 0.9 (needs >= 0.98)"], {}, {"batch_1": b1, "batch_8": b8}
    )


@pytest.mark.parametrize(
    ("ts", "ort", "serves"),
    [
        ((4.1, 22.7), (3.4, 17.1), "onnxruntime"),  # the MiniLM figures, 1 thread
        ((3.4, 17.1), (4.1, 22.7), "torchscript"),
        ((5.0, 20.0), (5.0, 20.0), "torchscript"),  # a tie serves the reference path
        ((1.0, 100.0), (4.0, 30.0), "torchscript"),  # geometric mean 10 vs 10.95 (a sum would pick ORT)
    ],
)
def test_auto_serves_the_faster_by_geometric_mean(ts, ort, serves):
    got, reason = choose_backend("auto", {"torchscript": cand(*ts), "onnxruntime": cand(*ort, variant=ORT_VARIANT)})
    assert got == serves
    other = "torchscript" if serves == "onnxruntime" else "onnxruntime"
    assert reason.startswith(
        f"auto: {serves} measured fastest, {math.sqrt(ts[0] * ts[1]) if serves == 'torchscript' else math.sqrt(ort[0] * ort[1]):.2f} ms"
    )
    assert f"({other})" in reason


def test_auto_never_serves_a_backend_that_misses_its_gates():
    fast_but_unfaithful = cand(1.0, 5.0, passes=False, variant=ORT_VARIANT)
    got, reason = choose_backend("auto", {"torchscript": cand(4.0, 20.0), "onnxruntime": fast_but_unfaithful})
    assert got == "torchscript"
    assert "onnxruntime refused (min_cosine 0.9 (needs >= 0.98))" in reason


def test_a_named_backend_serves_even_when_slower_and_refuses_when_it_fails():
    candidates = {"torchscript": cand(9.0, 90.0), "onnxruntime": cand(1.0, 5.0, variant=ORT_VARIANT)}
    assert choose_backend("torchscript", candidates) == ("torchscript", "artifact_backend = torchscript in settings")
    candidates["onnxruntime"] = cand(1.0, 5.0, passes=False, variant=ORT_VARIANT)
    with pytest.raises(ValueError, match="artifact_backend = onnxruntime, but onnxruntime cannot serve: min_cosine"):
        choose_backend("onnxruntime", candidates)
    with pytest.raises(ValueError, match="onnxruntime cannot serve: not built"):
        choose_backend("onnxruntime", {"torchscript": cand(1.0, 1.0)})


class ThreeLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.head = nn.Linear(16, 32), nn.Linear(32, 16), nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.b(torch.relu(self.a(x)))))


def test_kept_layers_are_found_by_their_weights_and_stay_fp32(tmp_path):
    model = ThreeLayers().eval()
    x = torch.randn(2, 5, 16)
    fp32 = onnx_backend.export(model, (x,), tmp_path / "fp32.onnx", ["x"], ["y"], {"x": {0: "batch", 1: "seq"}})
    kept = onnx_backend.nodes_for_layers(fp32, model, ["b"])
    assert len(kept) == 1
    graph = onnx.load(str(fp32)).graph
    node = next(n for n in graph.node if n.name == kept[0])
    weight = numpy_helper.to_array(next(i for i in graph.initializer if i.name == node.input[1]))
    np.testing.assert_array_equal(weight, model.b.weight.detach().numpy().T)
    bits = 7 if cpu_features.detect().saturating else 8  # 8-bit pair sums saturate on x86 without VNNI
    onnx_backend.quantize_int8(fp32, tmp_path / "int8.onnx", kept, bits)
    assert onnx_backend.count_ops(tmp_path / "int8.onnx", "MatMulIntegerToFloat") == 2
    kept_node = next(n for n in onnx.load(str(tmp_path / "int8.onnx")).graph.node if n.name == kept[0])
    assert kept_node.op_type == "MatMul"  # still a float MatMul
    with torch.inference_mode():
        ref = model(x)
    got = onnx_backend.OrtForward(tmp_path / "int8.onnx")(torch.randn(3, 7, 16))  # other batch and length
    assert got.shape == (3, 7, 4)
    assert float((onnx_backend.OrtForward(tmp_path / "int8.onnx")(x) - ref).abs().max()) < 0.05


def test_a_refused_candidate_is_not_shipped(tmp_path):
    model = ThreeLayers().eval()
    x = torch.randn(2, 5, 16)
    with torch.inference_mode():
        ref = model(x)
    built = onnx_backend.build_candidate(
        model,
        (x,),
        tmp_path / "cpu.onnx",
        (["x"], ["y"]),
        {"x": {0: "batch"}},
        keep_fp32=[],
        check_fp32=lambda f: ({"max_abs": float((f(x) - ref).abs().max())}, []),
        fidelity=lambda f: ({"mean_cosine": 0.9}, ["mean_cosine 0.9 (needs >= 2.0)"]),  # a gate nothing meets
        threads=1,
        strict=False,
    )
    assert not built.candidate.passes
    assert built.candidate.misses == ["mean_cosine 0.9 (needs >= 2.0)"]
    assert built.variant is None
    assert not (tmp_path / "cpu.onnx").exists()
    assert built.figures["max_abs"] < 1e-5


def test_an_export_failure_is_a_refusal_under_auto_and_an_error_when_named(tmp_path):
    class Unexportable(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if torch.jit.is_tracing():  # as an op without an ONNX form would
                raise RuntimeError("no ONNX symbolic for this op")
            return x * 2

    kwargs = {
        "keep_fp32": None,
        "check_fp32": lambda f: ({}, []),
        "fidelity": lambda f: ({}, []),
        "threads": 1,
    }
    x = torch.randn(2, 3)
    built = onnx_backend.build_candidate(
        Unexportable(), (x,), tmp_path / "m.onnx", (["x"], ["y"]), {}, strict=False, **kwargs
    )
    assert not built.candidate.passes
    assert built.candidate.misses[0].startswith("export or quantization failed")
    with pytest.raises(Exception):  # noqa: B017, PT011 (whatever the exporter raises, it is not swallowed)
        onnx_backend.build_candidate(
            Unexportable(), (x,), tmp_path / "m.onnx", (["x"], ["y"]), {}, strict=True, **kwargs
        )


# --- the text builder on a tiny model --------------------------------------------------------


def test_manifest_records_both_backends_and_the_choice(tiny_settings):
    manifest = read_manifest(tiny_settings.path("runtime.artifacts_dir"))
    embed = manifest.models["tiny-embed"]  # artifact_backend = "onnxruntime"
    assert embed.variants[ORT_VARIANT].backend == "onnxruntime"
    assert embed.variants[ORT_VARIANT].dtype == "int8-rowwise"
    assert embed.variants["cpu"].backend == "torchscript"  # the reference path is always built
    assert embed.variants[ORT_7BIT_VARIANT].dtype == "int8-rowwise"  # for x86 without VNNI
    assert set(embed.verification["onnxruntime"]["int8_forms"]) == {ORT_VARIANT, ORT_7BIT_VARIANT}
    fallback = embed.variants[ORT_FP32_VARIANT]  # what the start-up gate falls back to: fp32 compute
    assert (fallback.backend, fallback.dtype) == ("onnxruntime", "float32-w8")
    assert embed.verification["onnxruntime"]["fallback"]["misses"] == []
    assert "fidelity" in embed.files  # the start-up gate's sample
    b = embed.backends
    assert (b["setting"], b["serves"]) == ("onnxruntime", "onnxruntime")
    assert b["reason"] == "artifact_backend = onnxruntime in settings"
    assert b["threads"] >= 1
    assert b["onnxruntime_version"]
    for name in ("torchscript", "onnxruntime"):
        c = b["candidates"][name]
        assert c["passes"] is True
        assert set(c["latency_ms"]) == {"batch_1", "batch_8"}
        assert all(v > 0 for v in c["latency_ms"].values())
        assert c["fidelity"]["mean_cosine"] >= 0.99
    v = embed.verification["onnxruntime"]
    assert v["exported_vs_eager_fp32_max_abs"] <= 1e-4
    assert v["batch_vs_single_fp32_max_abs"] <= 1e-4
    assert v["int8_matmuls"] > 0
    ts_only = manifest.models["tiny-sentiment"]  # artifact_backend = "torchscript": ONNX is not built
    assert set(ts_only.variants) == {"cpu"}
    assert ts_only.backends["serves"] == "torchscript"
    assert set(ts_only.backends["candidates"]) == {"torchscript"}


def _settings(tiny_checkpoints, tmp_path, extra_keys: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "settings.toml"
    text = tiny_settings_toml(tiny_checkpoints, tmp_path / "artifacts")
    text = text.replace('artifact_backend = "onnxruntime"\n', "", 1)  # tiny-embed's own pin
    text = text.replace('name = "tiny-embed"', f'name = "tiny-embed"\n{extra_keys}', 1)
    path.write_text(text)
    return load_settings(path, env={})


def test_auto_serves_what_its_recorded_figures_say(tiny_checkpoints, tmp_path):
    settings = _settings(tiny_checkpoints, tmp_path, 'artifact_backend = "auto"')
    out = io.StringIO()
    build_all(settings, only=["tiny-embed"], out=out)
    b = read_manifest(tmp_path / "artifacts").models["tiny-embed"].backends
    scores = {n: math.sqrt(c["latency_ms"]["batch_1"] * c["latency_ms"]["batch_8"]) for n, c in b["candidates"].items()}
    fastest = min(scores, key=lambda n: (scores[n], n != "torchscript"))
    assert b["serves"] == fastest, (b, scores)
    assert b["reason"].startswith(f"auto: {fastest} measured fastest")
    assert f"serves {fastest}" in out.getvalue()


REAL_QUANTIZE = onnx_backend.quantize_int8


def _damaging_quantizer(fp32, int8, exclude, weight_bits=8, tables=True, static=None):
    """The real quantizer, then the token embedding table reversed: a graph far from fp32.

    (A random tiny BERT is dominated by its embeddings and residual path, so damage to its
    int8 weights alone barely moves the pooled vector.)
    """
    done = REAL_QUANTIZE(fp32, int8, exclude, weight_bits, tables, static)
    model = onnx.load(str(int8))
    for init in model.graph.initializer:
        if init.name.endswith(("word_embeddings.weight", "word_embeddings.weight_quantized")):  # fp32 or int8 table
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init)[::-1].copy(), init.name))
    onnx.save(model, str(int8))
    return done


def test_unfaithful_onnx_int8_is_refused_under_auto_and_fails_a_named_build(tiny_checkpoints, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_backend, "quantize_int8", _damaging_quantizer)
    settings = _settings(tiny_checkpoints, tmp_path, 'artifact_backend = "auto"\nmin_min_cosine = 0.99')
    build_all(settings, only=["tiny-embed"], out=io.StringIO())
    entry = read_manifest(tmp_path / "artifacts").models["tiny-embed"]
    b = entry.backends
    assert b["serves"] == "torchscript"
    assert b["candidates"]["onnxruntime"]["passes"] is False
    assert "onnxruntime refused (mean_cosine" in b["reason"]
    assert ORT_VARIANT not in entry.variants
    assert not (tmp_path / "artifacts" / "tiny-embed" / "cpu.onnx").exists()
    assert b["candidates"]["onnxruntime"]["latency_ms"] == {}  # a refused graph is not timed

    named = _settings(tiny_checkpoints, tmp_path / "named", 'artifact_backend = "onnxruntime"\nmin_min_cosine = 0.99')
    with pytest.raises(
        BuildError, match=r"model tiny-embed: artifact_backend = onnxruntime, but onnxruntime cannot serve: mean_cosine"
    ):
        build_all(named, only=["tiny-embed"], out=io.StringIO())


def test_latency_is_timed_per_input_and_threads_are_restored():
    calls: list[str] = []
    before = torch.get_num_threads()
    got = onnx_backend.measure_latency(
        {
            "torchscript": (lambda x: calls.append(f"ts{x}"), {"batch_1": (1,), "batch_8": (8,)}),
            "onnxruntime": (lambda x: calls.append(f"ort{x}"), {"batch_1": (1,), "batch_8": (8,)}),
        },
        threads=1,
        rounds={"batch_1": 3, "batch_8": 2},
        warm=1,
    )
    assert set(got) == {"torchscript", "onnxruntime"}
    assert all(set(v) == {"batch_1", "batch_8"} for v in got.values())
    assert calls[:4] == ["ts1", "ort1", "ts1", "ort1"]  # interleaved, so load drift hits both alike
    assert calls.count("ts8") == calls.count("ort8") == 3
    assert torch.get_num_threads() == before


def test_the_cpu_bundle_keeps_the_onnx_variant(tiny_settings, tmp_path):
    from edge_mm.build.bundle_artifacts import copy_artifacts

    copied = copy_artifacts(tiny_settings, tmp_path / "artifacts", "cpu")
    assert set(copied["models"]["tiny-embed"]["variants"]) == {"cpu", ORT_VARIANT, ORT_7BIT_VARIANT, ORT_FP32_VARIANT}
    entry = read_manifest(tmp_path / "artifacts").models["tiny-embed"]
    assert entry.variants[ORT_VARIANT].files["model"].resolve(tmp_path / "artifacts").suffix == ".onnx"
    assert entry.backends["serves"] == "onnxruntime"


# --- which recipe a text model's ONNX Runtime candidate keeps (build/text.py _onnx_candidate) -----------------


def _figures(served: str, seven_misses: list[str] | None, fallback_misses: list[str] | None) -> dict:
    forms = {onnx_backend.ORT_VARIANT: {"misses": []}}
    if seven_misses is not None:
        forms[onnx_backend.ORT_7BIT_VARIANT] = {"misses": seven_misses}
    figures: dict = {"int8_forms": forms, "served_on_build_cpu": served}
    if fallback_misses is not None:
        figures["fallback"] = {"misses": fallback_misses}
    return figures


def test_a_build_serves_every_x86_only_with_a_form_that_holds_without_vnni() -> None:
    eight, seven = onnx_backend.ORT_VARIANT, onnx_backend.ORT_7BIT_VARIANT
    assert onnx_backend.serves_every_x86(_figures(eight, [], None))  # the 7-bit form met the gates
    assert onnx_backend.serves_every_x86(_figures(eight, ["max_prob_diff 0.22"], []))  # fp32 compute did
    assert onnx_backend.serves_every_x86(_figures(seven, None, None))  # built on AVX2: the 7-bit form serves
    assert onnx_backend.serves_every_x86({"int8_forms": {}})  # an fp32 graph holds everywhere
    missed = _figures(eight, ["max_prob_diff 0.22"], ["max_prob_diff 0.105"])
    assert not onnx_backend.serves_every_x86(missed)
    assert onnx_backend.why_not_every_x86(missed) == (
        "no form for x86 without VNNI: 7-bit max_prob_diff 0.22, fp32 compute max_prob_diff 0.105"
    )


stricts: list[bool] = []  # per build: whether a miss would fail it (artifact_backend = "onnxruntime")


def _recipes_run(monkeypatch, outcomes: list[tuple[bool, bool]]) -> tuple[onnx_backend.OnnxBuild, list[int]]:
    """_onnx_candidate over fake recipes: (passes here, holds on every x86) per recipe; the builds it ran."""
    from types import SimpleNamespace

    from edge_mm.build import text

    eight = onnx_backend.ORT_VARIANT
    built: list[int] = []
    stricts.clear()

    def fake(spec, samples, recipe, path, threads, fidelity, calibration, strict):
        n = int(recipe.name)
        built.append(n)
        stricts.append(strict)
        passes, everywhere = outcomes[n]
        figures = _figures(eight, [] if everywhere else ["max_prob_diff 0.22"], None)
        misses = [] if passes else ["max_prob_diff 0.3"]
        return onnx_backend.OnnxBuild(onnx_backend.Candidate("cpu-onnxruntime", passes, misses), figures)

    monkeypatch.setattr(text, "_build_recipe", fake)
    exports = [text._OnnxRecipe(str(n), nn.Identity(), []) for n in range(len(outcomes))]
    samples = SimpleNamespace(fidelity_batches=[])
    return text._onnx_candidate(SimpleNamespace(), samples, exports, None, 1), built  # type: ignore[arg-type]


def test_the_first_recipe_that_holds_on_every_x86_is_kept(monkeypatch) -> None:
    build, built = _recipes_run(monkeypatch, [(False, False), (True, False), (True, True), (True, True)])
    assert built == [0, 1, 2]
    assert build.figures["recipe"] == "2"
    assert build.figures["tried"][1].startswith("1: passes here, but no form for x86 without VNNI: 7-bit")
    assert "every_x86" not in build.figures


def test_without_one_the_first_recipe_that_passes_is_built_again_and_says_so(monkeypatch) -> None:
    build, built = _recipes_run(monkeypatch, [(False, False), (True, False), (True, False)])
    assert built == [0, 1, 2, 1]
    assert build.figures["recipe"] == "1"
    assert build.figures["every_x86"].startswith("no recipe did: no form for x86 without VNNI")
    assert [t.split(":")[0] for t in build.figures["tried"]] == ["0", "2"]


def test_once_a_recipe_passed_a_later_miss_never_fails_the_build(monkeypatch) -> None:
    build, built = _recipes_run(monkeypatch, [(True, False), (False, False)])
    assert built == [0, 1, 0]
    assert stricts == [False, False, False]  # the last recipe was not strict: recipe 0 had passed
    assert build.figures["recipe"] == "0"
    _recipes_run(monkeypatch, [(False, False), (False, False)])
    assert stricts == [False, True]  # nothing passed: the last may fail the build


def test_when_none_passes_the_last_result_stands(monkeypatch) -> None:
    build, built = _recipes_run(monkeypatch, [(False, False), (False, True)])
    assert built == [0, 1]
    assert build.figures["recipe"] == "1"
    assert not build.candidate.passes
    assert len(build.figures["tried"]) == 1
