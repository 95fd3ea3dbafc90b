import io

from edge_mm.runtime import registry as registry_module
from edge_mm.runtime.self_check import run_check
from edge_mm.tasks.table import LOADERS, OPTIONS


def test_check_fails_when_outputs_drift(tiny_settings, monkeypatch):
    real_load = registry_module.load_registry

    def drifting(settings, loaders, **kwargs):
        reg = real_load(settings, loaders, **kwargs)
        runner = reg.models["tiny-sentiment"].runner
        original = runner.check_outputs
        monkeypatch.setattr(runner, "check_outputs", lambda texts: [o + 0.5 for o in original(texts)])
        return reg

    monkeypatch.setattr("edge_mm.runtime.self_check.load_registry", drifting)
    out = io.StringIO()
    assert run_check(tiny_settings, LOADERS, out, options=OPTIONS) == 1
    text = out.getvalue()
    assert "tiny-sentiment: MISMATCH" in text
    assert "tiny-embed: ok" in text
