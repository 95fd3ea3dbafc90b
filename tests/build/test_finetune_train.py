"""`edge-mm finetune` end to end on a tiny random BERT: both tasks learn their handful of sentences
(F1 = 1.0), bad input exits 2 and writes nothing, Ctrl-C keeps the best checkpoint and --resume
finishes the run, and a registered model builds, serves and returns its entities with exact offsets."""

from __future__ import annotations

import io
import json
import textwrap
import tomllib
from pathlib import Path

import pytest

from edge_mm.build.finetune import run as run_module
from edge_mm.build.finetune.options import FinetuneOptions
from edge_mm.build.finetune.run import finetune
from edge_mm.build.finetune.train import load_data, staging_dir
from edge_mm.cli import main
from tests.build.finetune.tiny import NER, conll_text, csv_text, make_base
from tests.conftest import test_client, warm_registry

# Fast, certain learning for a 32-wide model on six sentences; one thread spares the shared CPU.
TINY = [
    "--epochs",
    "15",
    "--patience",
    "0",
    "--learning-rate",
    "1e-2",
    "--batch-size",
    "2",
    "--warmup-ratio",
    "0",
    "--threads",
    "1",
]
TINY_OPTIONS = {
    "epochs": 15,
    "learning_rate": 1e-2,
    "batch_size": 2,
    "warmup_ratio": 0.0,
    "threads": 1,
    "max_length": 32,
}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("finetune")
    make_base(root / "base")
    (root / "ner.conll").write_text(conll_text())
    (root / "sentiment.csv").write_text(csv_text())
    (root / "settings.toml").write_text(
        textwrap.dedent(
            f"""
            # a comment that registering keeps
            [server]
            max_text_chars = 2000
            [runtime]
            artifacts_dir = "{root / "artifacts"}"
            """
        )
    )
    return root


def cli(work: Path, *argv: str) -> int:
    return main(["--config", str(work / "settings.toml"), "finetune", *argv])


@pytest.fixture(scope="module")
def ner_model(work: Path) -> Path:
    """Trained once through the CLI and registered as 'tiny-ner-ft' in the module's settings.toml."""
    data = str(work / "ner.conll")
    out = work / "ner-model"
    argv = ["--task", "token-classification", "--train", data, "--dev", data, "--test", data]
    argv += ["--base", str(work / "base"), "--out", str(out), "--max-length", "32", "--register", "tiny-ner-ft"]
    assert cli(work, *argv, *TINY) == 0
    return out


def test_token_classification_learns_its_sentences(ner_model: Path) -> None:
    report = json.loads((ner_model / "report.json").read_text())
    assert report["splits"]["test"]["entity_f1"] == 1.0
    assert report["splits"]["test"]["entities"]["micro avg"]["support"] == sum(len(s) for _, s in NER)
    assert report["labels"] == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    config = json.loads((ner_model / "config.json").read_text())
    assert config["id2label"]["5"] == "B-PER"
    assert config["label2id"]["I-PER"] == 6
    for name in ("model.safetensors", "tokenizer.json", "report.md", "training.png"):
        assert (ner_model / name).is_file(), name
    assert "| **micro avg** | 1.0000 | 1.0000 | 1.0000 | 10 |" in (ner_model / "report.md").read_text()
    assert not staging_dir(ner_model).exists()


def test_register_appends_the_entry(work: Path, ner_model: Path) -> None:
    text = (work / "settings.toml").read_text()
    assert text.startswith("\n# a comment that registering keeps")
    entry = tomllib.loads(text)["models"][-1]
    assert entry == {"name": "tiny-ner-ft", "task": "token-classification", "source": "ner-model", "max_length": 32}
    again = ["--task", "token-classification", "--train", str(work / "ner.conll"), "--out", str(work / "x")]
    assert cli(work, *again, "--register", "tiny-ner-ft") == 2  # the name is taken: refused before training
    assert not (work / "x").exists()


def test_registered_model_builds_and_serves_exact_offsets(work: Path, ner_model: Path) -> None:
    from edge_mm.build.all_models import build_all
    from edge_mm.config import load_settings

    settings = load_settings(work / "settings.toml", env={})
    manifest = build_all(settings, only=["tiny-ner-ft"], out=io.StringIO())
    figures = manifest.models["tiny-ner-ft"].verification["int8_vs_fp32"]
    assert figures["top1_agreement"] >= 0.95
    client = test_client(settings, warm_registry(settings))
    texts = [text for text, _ in NER]
    resp = client.post("/v1/token-classification", json={"model": "tiny-ner-ft", "inputs": texts})
    assert resp.status_code == 200, resp.get_json()
    for (text, spans), result in zip(NER, resp.get_json()["results"], strict=True):
        got = [(e["start"], e["end"], e["label"], e["text"]) for e in result["entities"]]
        assert got == [(s, e, k, text[s:e]) for s, e, k in spans], text


def test_text_classification_learns_its_sentences(work: Path) -> None:
    data, out = str(work / "sentiment.csv"), work / "sentiment-model"
    argv = [
        "--task",
        "text-classification",
        "--train",
        data,
        "--dev",
        data,
        "--test",
        data,
        "--base",
        str(work / "base"),
    ]
    assert cli(work, *argv, "--out", str(out), "--max-length", "32", "--grad-accum", "2", *TINY) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["splits"]["test"]["accuracy"] == 1.0
    assert report["splits"]["test"]["confusion"] == {"labels": ["negative", "positive"], "matrix": [[3, 0], [0, 3]]}
    assert report["options"]["grad_accum"] == 2
    assert (out / "confusion.png").is_file()
    assert (out / "training.png").is_file()


# --- bad input: exit 2, a message naming the problem, nothing written ---------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--base", "/no/such/base"], "/no/such/base does not exist"),
        (["--base", "package:no_such_pkg/model"], "package 'no_such_pkg' is not installed"),
        (["--max-length", "2"], "--max-length 2: too short for any token"),
        (["--train", "EMPTY"], "empty.conll: the file is empty"),
        (["--dev", "DEVLOC"], "dev.conll:1: tag 'B-XYZ' does not occur in the training data"),
        (["--out", "EXISTS"], "already exists; pass --overwrite"),
        (["--resume"], "--resume: no interrupted run"),
        (["--task", "text-classification"], "CoNLL files hold token tags"),
    ],
    ids=["unknown-base", "unknown-package", "max-length", "empty", "dev-only-label", "out-exists", "resume", "task"],
)
def test_bad_input_exits_2_and_writes_nothing(
    work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    (tmp_path / "empty.conll").write_text("")
    (tmp_path / "dev.conll").write_text("x B-XYZ\n")
    (tmp_path / "exists").mkdir()
    (tmp_path / "exists" / "keep.txt").write_text("mine")
    subs = {
        "EMPTY": str(tmp_path / "empty.conll"),
        "DEVLOC": str(tmp_path / "dev.conll"),
        "EXISTS": str(tmp_path / "exists"),
    }
    base = {"--task": "token-classification", "--train": str(work / "ner.conll"), "--base": str(work / "base")}
    base["--out"] = str(tmp_path / "out")
    for flag, value in zip(extra[::2], extra[1::2], strict=False):
        base[flag] = subs.get(value, value)
    argv = [x for kv in base.items() for x in kv] + [f for f in extra if f == "--resume"]
    assert cli(work, *argv, *TINY) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev.conll", "empty.conll", "exists"]
    assert (tmp_path / "exists" / "keep.txt").read_text() == "mine"


# --- Ctrl-C and --resume, seeded split ---------------------------------------------------------------------


def test_ctrl_c_keeps_best_then_resume_finishes(work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "model"
    opts = FinetuneOptions(task="token-classification", train=work / "ner.conll", out=out, base=str(work / "base"))
    for k, v in (TINY_OPTIONS | {"epochs": 4, "patience": 0}).items():
        setattr(opts, k, v)
    real_epoch = run_module.Run._epoch

    def interrupted(self: run_module.Run, epoch: int) -> float:
        if epoch == 3:
            raise KeyboardInterrupt
        return real_epoch(self, epoch)

    monkeypatch.setattr(run_module.Run, "_epoch", interrupted)
    log = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        finetune(opts, packages_dir=tmp_path, base_dir=tmp_path, out=log)
    first = json.loads((out / "report.json").read_text())
    assert first["epochs_run"] == 2
    assert first["stopped"].startswith("interrupted")
    assert (staging_dir(out) / "state.pt").is_file()
    monkeypatch.setattr(run_module.Run, "_epoch", real_epoch)
    opts.resume = True
    finetune(opts, packages_dir=tmp_path, base_dir=tmp_path, out=log)
    final = json.loads((out / "report.json").read_text())
    assert [h["epoch"] for h in final["history"]] == [1, 2, 3, 4]
    assert final["history"][:2] == first["history"]
    assert final["stopped"] == "completed"
    assert "resuming after epoch 2" in log.getvalue()
    assert not staging_dir(out).exists()


def test_dev_split_is_seeded(work: Path, tmp_path: Path) -> None:
    opts = FinetuneOptions(task="token-classification", train=work / "ner.conll", out=tmp_path / "o", dev_fraction=0.34)
    a, b = load_data(opts), load_data(opts)
    assert [e.tokens for e in a.dev] == [e.tokens for e in b.dev]  # type: ignore[union-attr]
    assert len(a.dev) == 2
    assert len(a.train) == 4
    opts.seed = 1
    assert [e.tokens for e in load_data(opts).dev] != [e.tokens for e in a.dev]  # type: ignore[union-attr]
