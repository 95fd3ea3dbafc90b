from pathlib import Path

import pytest

from edge_mm.config import SETTINGS, load_settings, settings_markdown
from edge_mm.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "settings.toml"
    p.write_text(text)
    return p


def test_defaults_without_file():
    s = load_settings(None, env={})
    assert s["server.port"] == 8080
    assert s["runtime.device"] == "auto"
    assert s.models == ()


def test_repo_settings_load():
    s = load_settings(ROOT / "settings.toml", env={})
    assert [m.name for m in s.models][0] == "minilm"


def test_env_overrides_file(tmp_path):
    p = write(tmp_path, "[server]\nport = 9000\n")
    assert load_settings(p, env={})["server.port"] == 9000
    s = load_settings(p, env={"EDGE_MM_SERVER_PORT": "9100", "EDGE_MM_SERVER_API_KEYS": "a, b"})
    assert s["server.port"] == 9100
    assert s["server.api_keys"] == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "env", "needle"),
    [
        ("[server]\nport = 'x'\n", {}, "server.port (from settings.toml): 'x' is not a valid int"),
        ("[runtime]\ndevice = 'tpu'\n", {}, "'tpu' is not allowed; use one of auto, cpu, cuda"),
        ("", {"EDGE_MM_RUNTIME_DEVICE": "gpu"}, "runtime.device (from $EDGE_MM_RUNTIME_DEVICE)"),
        ("[server]\nport = -1\n", {}, "too small; the minimum is 0"),
        ("[server]\nprot = 1\n", {}, "unknown key(s) ['prot'] in [server]"),
        ("[serve]\nport = 1\n", {}, "unknown section(s) ['serve']"),
        ("[[models]]\nname = 'a'\n", {}, "models[0].task is required"),
        ("[[models]]\nname='a'\ntask='ocr'\nsource='x'\n", {}, "models[0].task: 'ocr' is not allowed"),
        ("[[models]]\nname='a b'\ntask='embeddings'\nsource='x'\n", {}, "models[0].name: 'a b' is not allowed"),
        ("[[models]]\nname='a'\ntask='embeddings'\nsource='x'\nmax_length='9'\n", {}, "max_length: '9' is not a int"),
        (
            "[[models]]\nname='a'\ntask='embeddings'\nsource='x'\n[[models]]\nname='a'\ntask='embeddings'\nsource='y'\n",
            {},
            "duplicate name(s) ['a']",
        ),
        ("[server\n", {}, "is not valid TOML"),
    ],
)
def test_invalid_settings_name_key_value_and_fix(tmp_path, text, env, needle):
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), env=env)
    assert needle in str(info.value)


def test_every_setting_is_documented():
    doc = (ROOT / "docs" / "settings.md").read_text()
    assert doc == settings_markdown(), "docs/settings.md is stale: run `edge-mm settings-doc > docs/settings.md`"
    for s in SETTINGS:
        assert s.help
        assert s.env in doc
