from pathlib import Path

import pytest

from edge_mm.config import SETTINGS, load_settings
from edge_mm.errors import ConfigError
from edge_mm.tasks.table import LOADERS, MODEL_KINDS, check_models, check_table, routes_for, settings_doc

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


def test_unknown_model_kind_is_a_config_error_naming_the_kinds(tmp_path):
    settings = load_settings(write(tmp_path, "[[models]]\nname='a'\ntask='pose'\nsource='x'\n"), env={})
    with pytest.raises(ConfigError, match="models\\[0\\].task: 'pose' is not allowed; use one of embeddings, "):
        check_models(settings)


def test_cli_refuses_an_unknown_model_kind_with_exit_2(tmp_path, capsys):
    from edge_mm.cli import main

    assert main(["--config", str(write(tmp_path, "[[models]]\nname='a'\ntask='pose'\nsource='x'\n")), "info"]) == 2
    assert "'pose' is not allowed" in capsys.readouterr().err


def test_the_task_table_is_consistent():
    check_table()
    assert set(LOADERS) == set(MODEL_KINDS)
    for kind in MODEL_KINDS:
        assert routes_for(kind), kind


def test_every_setting_is_documented():
    doc = (ROOT / "docs" / "settings.md").read_text()
    assert doc == settings_doc(), "docs/settings.md is stale: run `edge-mm settings-doc > docs/settings.md`"
    for s in SETTINGS:
        assert s.help
        assert s.env in doc
    for kind, k in MODEL_KINDS.items():  # every option of every kind, serve-time and build-time
        for key in [*k.options.model_fields, *k.build_options]:
            assert f"| `{kind}` | `{key}` |" in doc


def test_model_spec_defaults_are_the_settings_table_defaults():
    """A ModelSpec made in code gets MODEL_SETTINGS' defaults, as a [[models]] table does: the table is the one
    source (lists arrive as tuples; each spec gets its own options dict)."""
    from dataclasses import fields

    from edge_mm.config import MODEL_SETTINGS, ModelSpec

    assert [f.name for f in fields(ModelSpec)] == [m.key for m in MODEL_SETTINGS]
    spec = ModelSpec("m", "embeddings", "x")
    for m in MODEL_SETTINGS[3:]:
        assert getattr(spec, m.key) == (tuple(m.default) if isinstance(m.default, list) else m.default), m.key
    assert ModelSpec("a", "embeddings", "x").options is not ModelSpec("b", "embeddings", "x").options
