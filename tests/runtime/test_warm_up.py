"""Warm-up: a model whose warm-up fails is named, and the registry stays not ready."""

from __future__ import annotations

import dataclasses
import logging

from edge_mm.runtime.registry import Registry


class FineRunner:
    def warm(self) -> float:
        return 1.0


class BrokenRunner:
    def warm(self) -> float:
        raise RuntimeError("no kernel for this CPU")


def test_warm_all_records_which_model_failed(tiny_registry, caplog):
    served = tiny_registry.models["tiny-embed"]
    reg = Registry(
        models={
            "fine": dataclasses.replace(served, name="fine", runner=FineRunner()),
            "broken": dataclasses.replace(served, name="broken", runner=BrokenRunner()),
        }
    )
    with caplog.at_level(logging.ERROR, logger="edge_mm.registry"):
        reg.warm_all()
    assert not reg.ready
    assert reg.failed_model == "broken"
    assert reg.failure == "warm-up of model 'broken' failed: RuntimeError"  # /health/ready shows it: no message
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("'broken'" in m and "no kernel for this CPU" in m for m in logged), logged
