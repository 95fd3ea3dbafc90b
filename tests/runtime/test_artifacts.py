"""Loading artifacts: the ONNX Runtime session behind the TorchScript call, which CPU variant serves, and
servers whose models run on ONNX Runtime answering like their TorchScript twins."""

from __future__ import annotations

import io
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from edge_mm.errors import ConfigError
from edge_mm.manifest import ORT_7BIT_VARIANT, ORT_VARIANT, FileRef, ModelEntry, Variant, read_manifest
from edge_mm.runtime.artifacts import load_artifact, serving_variant
from edge_mm.runtime.onnx_session import OnnxSession
from edge_mm.runtime.probes import png_base64, probe_pixels
from edge_mm.runtime.text_model import TextModel
from tests.conftest import served_cpu_variant

SENTENCES = ["the man plays guitar in paris", "john smith works at acme", "a café in 東京", "ok"]


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.proj = nn.Embedding(50, 8), nn.Linear(8, 3)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.emb(ids) * mask.unsqueeze(-1)
        return self.proj(h).sum(1), h.mean(1)


@pytest.fixture(scope="module")
def two_inputs_onnx(tmp_path_factory):
    from edge_mm.build import onnx_backend

    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    ids, mask = torch.randint(0, 50, (2, 5)), torch.ones(2, 5, dtype=torch.int64)
    axes = {"ids": {0: "b", 1: "s"}, "mask": {0: "b", 1: "s"}, "y": {0: "b"}, "h": {0: "b"}}
    return onnx_backend.export(TwoInputs().eval(), (ids, mask), path, ["ids", "mask"], ["y", "h"], axes)


def test_session_answers_like_the_torch_module(two_inputs_onnx):
    session = OnnxSession(two_inputs_onnx, threads=2)
    assert session.threads == 2
    assert session.input_names == ["ids", "mask"]
    ids, mask = torch.randint(0, 50, (3, 7)), torch.ones(3, 7, dtype=torch.int64)
    mask[1, 4:] = 0
    with torch.inference_mode():
        want = TwoInputs().eval()(ids, mask)
    by_position = session(ids, mask)  # CPU tensors in, numpy out
    by_name = session(mask=mask.numpy(), ids=ids.numpy())
    assert isinstance(by_position, tuple)
    assert all(isinstance(a, np.ndarray) for a in by_position)
    for got in (by_position, by_name):
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w.numpy(), atol=1e-5)
    with pytest.raises(TypeError, match=r"takes inputs \['ids', 'mask'\], got \['ids'\]"):
        session(ids)


def entry(backends: dict, variants: tuple[str, ...] = ("cpu", ORT_VARIANT)) -> ModelEntry:
    made = {k: Variant({"model": FileRef(f"{k}.bin", "0")}, "int8-dynamic") for k in variants}
    return ModelEntry("embeddings", "x", "h", made, [], [], backends=backends)


def test_the_build_choice_serves_on_cpu_and_cuda_serves_torchscript():
    ort = {"setting": "auto", "serves": "onnxruntime", "reason": "auto: onnxruntime measured fastest"}
    assert serving_variant(entry(ort), "cpu") == (ORT_VARIANT, "auto: onnxruntime measured fastest")
    assert serving_variant(entry(ort, ("cpu", ORT_VARIANT, "cuda")), "cuda") == ("cuda", "TorchScript: the CUDA path")
    ts = {"setting": "auto", "serves": "torchscript", "reason": "auto: torchscript measured fastest"}
    assert serving_variant(entry(ts, ("cpu",)), "cpu")[0] == "cpu"
    assert serving_variant(entry({}, ("cpu",)), "cpu")[0] == "cpu"  # artifacts from before ONNX Runtime


@pytest.mark.parametrize(
    ("built_for", "setting"), [("auto", "torchscript"), ("torchscript", "onnxruntime"), (None, "onnxruntime")]
)
def test_a_setting_the_artifacts_were_not_built_for_says_rebuild(built_for, setting):
    backends = {"setting": built_for, "serves": "torchscript"} if built_for else {}
    with pytest.raises(ConfigError, match=rf"artifact_backend = {setting} in settings, .*run 'edge-mm build' again"):
        serving_variant(entry(backends), "cpu", setting)


def test_unknown_backend_is_refused(tmp_path):
    (tmp_path / "m.bin").write_bytes(b"x")
    from edge_mm.manifest import sha256_file

    variant = Variant({"model": FileRef("m.bin", sha256_file(tmp_path / "m.bin"))}, "float32", backend="tflite")
    with pytest.raises(ConfigError, match="backend 'tflite' is unknown"):
        load_artifact(variant, tmp_path, "cpu")


def test_onnx_and_torchscript_artifacts_give_the_same_answers(tiny_settings):
    """tiny-embed is built with both variants; served from either, its vectors agree within int8 tolerance."""
    root = tiny_settings.path("runtime.artifacts_dir")
    e = read_manifest(root).models["tiny-embed"]
    ort = TextModel.load("tiny-embed", e, root, "cpu", ORT_VARIANT, 16)
    ts = TextModel.load("tiny-embed", e, root, "cpu", "cpu", 16)
    assert isinstance(ort.module, OnnxSession)
    got = ort.check_outputs(SENTENCES)
    assert all(isinstance(v, np.ndarray) for v in got)  # the ONNX Runtime path is numpy end to end (no torch)
    a, b = torch.from_numpy(np.stack(got)), torch.stack(ts.check_outputs(SENTENCES))
    assert a.dtype == b.dtype == torch.float32
    assert float(torch.nn.functional.cosine_similarity(a, b).min()) > 0.999
    assert float((a - b).abs().max()) < 2e-2  # `edge-mm check`'s CPU tolerance


def test_server_with_onnx_runtime_answers_embeddings(client, tiny_registry, tiny_settings):
    served = tiny_registry.models["tiny-embed"].variant
    assert served == served_cpu_variant(tiny_settings, "tiny-embed")  # the 7-bit form on x86 without VNNI
    assert served in (ORT_VARIANT, ORT_7BIT_VARIANT)
    info = client.get("/info").get_json()["models"]["tiny-embed"]
    assert info["backend"] == "onnxruntime"
    assert info["backend_reason"] == "artifact_backend = onnxruntime in settings"
    assert info["backends"]["candidates"]["onnxruntime"]["latency_ms"]["batch_8"] > 0
    # a lone text pass may take every core (runtime/solo.py): a second session when there is more than one
    solo = client.get("/info").get_json()["threads"]["solo"]
    assert tiny_registry.models["tiny-embed"].runner.module.solo_threads == solo
    assert tiny_registry.models["tiny-ner"].runner.module.solo_threads == 0  # classifiers keep one session
    r = client.post("/v1/embeddings", json={"input": SENTENCES, "model": "tiny-embed"})
    assert r.status_code == 200, r.get_json()
    data = r.get_json()["data"]
    assert len(data) == len(SENTENCES)
    vectors = torch.tensor([d["embedding"] for d in data])
    assert torch.allclose(vectors.norm(dim=1), torch.ones(len(SENTENCES)), atol=1e-3)
    root = tiny_settings.path("runtime.artifacts_dir")
    ts = TextModel.load("tiny-embed", tiny_registry.models["tiny-embed"].entry, root, "cpu", "cpu", 16)
    assert float((vectors - torch.stack(ts.check_outputs(SENTENCES))).abs().max()) < 2e-2


@pytest.fixture(scope="module")
def image_backends(tmp_path_factory):
    """One tiny ViT built twice: served by ONNX Runtime and by TorchScript (fp32, so they agree closely)."""
    from edge_mm.build.all_models import build_all
    from edge_mm.config import load_settings
    from tests.conftest import warm_registry
    from tests.vision_fixtures import make_vit_classifier

    root = tmp_path_factory.mktemp("vit-backends")
    vit = make_vit_classifier(root / "vit")
    models = "".join(
        f"""
        [[models]]
        name = "vit-{short}"
        task = "image-classification"
        source = "{vit}"
        quantization = "none"
        artifact_backend = "{backend}"
        """
        for short, backend in (("ort", "onnxruntime"), ("ts", "torchscript"))
    )
    path = root / "settings.toml"
    path.write_text(textwrap.dedent(f'[runtime]\nartifacts_dir = "{root / "artifacts"}"\n') + textwrap.dedent(models))
    settings = load_settings(path, env={})
    build_all(settings, out=io.StringIO())
    return settings, warm_registry(settings)


def test_server_with_onnx_runtime_answers_image_classification(image_backends):
    from tests.conftest import test_client

    settings, registry = image_backends
    assert registry.models["vit-ort"].variant == ORT_VARIANT
    assert registry.models["vit-ts"].variant == "cpu"
    client = test_client(settings, registry)
    images = [png_base64(probe_pixels(60, 80, seed)) for seed in (1, 2)]
    answers = {}
    for name in ("vit-ort", "vit-ts"):
        r = client.post("/v1/image-classification", json={"images": images, "top_k": 3, "model": name})
        assert r.status_code == 200, r.get_json()
        assert r.headers["X-Edge-Model"] == name
        answers[name] = r.get_json()["results"]
        r = client.post("/v1/image-embeddings", json={"images": images, "model": name})
        assert r.status_code == 200, r.get_json()
        answers[name + "/emb"] = [d["embedding"] for d in r.get_json()["data"]]
    for ort_row, ts_row in zip(answers["vit-ort"], answers["vit-ts"], strict=True):
        assert [x["label"] for x in ort_row] == [x["label"] for x in ts_row]
        assert [x["score"] for x in ort_row] == pytest.approx([x["score"] for x in ts_row], abs=1e-4)
    np.testing.assert_allclose(answers["vit-ort/emb"], answers["vit-ts/emb"], atol=1e-4)
