"""Each model's Ray Serve deployment options, from the ``[ray]`` settings (no Ray import here).

``[ray]`` gives every model's defaults; ``[ray.models.<name>]`` overrides them for one model.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from edge_mm.config import Settings
from edge_mm.errors import ConfigError


@dataclass(frozen=True)
class ModelDeployment:
    """How one model runs on Ray Serve: a fixed ``replicas`` count, or autoscaling from ``replicas`` up to
    ``max_replicas`` on ongoing requests (``target_ongoing_requests`` per replica)."""

    replicas: int
    max_replicas: int
    target_ongoing_requests: float
    upscale_delay_s: float
    num_cpus: float
    num_gpus: float

    @property
    def autoscaling(self) -> bool:
        return self.max_replicas > self.replicas

    def serve_options(self) -> dict[str, Any]:
        """Keyword arguments for ``Deployment.options``."""
        actor = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if not self.autoscaling:
            return {"num_replicas": self.replicas, "ray_actor_options": actor}
        return {
            "autoscaling_config": {
                "min_replicas": self.replicas,
                "initial_replicas": self.replicas,
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
                "upscale_delay_s": self.upscale_delay_s,
            },
            "ray_actor_options": actor,
        }


KEYS = tuple(f.name for f in fields(ModelDeployment))
_MINIMUM = {"replicas": 1, "max_replicas": 0, "target_ongoing_requests": 0.1}


def _value(key: str, value: Any, where: str) -> Any:
    want = int if key in ("replicas", "max_replicas") else float
    if isinstance(value, bool) or not isinstance(value, int | float) or (want is int and not float(value).is_integer()):
        raise ConfigError(f"{where}.{key}: {value!r} is not a valid {want.__name__}")
    if value < _MINIMUM.get(key, 0):
        raise ConfigError(f"{where}.{key}: {value!r} is too small; the minimum is {_MINIMUM.get(key, 0):g}")
    return want(value)


def model_deployments(settings: Settings) -> dict[str, ModelDeployment]:
    """Every configured model's deployment options; raises ConfigError naming a bad key or model."""
    base = ModelDeployment(**{k: settings[f"ray.{k}"] for k in KEYS})
    names = [m.name for m in settings.models]
    overrides = settings["ray.models"]
    unknown = set(overrides) - set(names)
    if unknown:
        raise ConfigError(f"ray.models: {sorted(unknown)} not among the configured models {names}")
    out = {}
    for name in names:
        table = overrides.get(name, {})
        where = f"ray.models.{name}"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: expected a table of {', '.join(KEYS)}, got {table!r}")
        extra = set(table) - set(KEYS)
        if extra:
            raise ConfigError(f"{where}: unknown key(s) {sorted(extra)}; allowed: {', '.join(KEYS)}")
        out[name] = replace(base, **{k: _value(k, v, where) for k, v in table.items()})
    return out
