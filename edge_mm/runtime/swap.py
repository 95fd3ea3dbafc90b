"""Hot swap: load a model's versions while the server runs, then switch requests to them with none failing.

A load reads the versions the model's ``version_policy`` selects (runtime/versions.py), loads each new one
through the start-up fidelity gate, warms it and replays its recorded reference sample; only then does the
registry serve it (one dict assignment: a request sees the old versions or the new ones). Requests already
inside an old version finish on it; the old version is retired in the background: new arrivals that still
hold it go to its successor, and once its last request leaves its batcher stops and its memory is freed. A
load that fails anywhere leaves what served serving, and says why (``LoadFailed``, 409).
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from edge_mm import device as device_policy
from edge_mm.config import ModelSpec, Settings
from edge_mm.errors import ConfigError, EdgeError, NotFound
from edge_mm.runtime.malloc import trim_heap
from edge_mm.runtime.model_loading import (
    cuda_available_for,
    load_served,
    model_info,
    open_partners,
    served_entry_for,
)
from edge_mm.runtime.options import KindOptions
from edge_mm.runtime.periodic import Periodic
from edge_mm.runtime.registry import Registry
from edge_mm.runtime.runner import Loader
from edge_mm.runtime.self_check import reference_miss
from edge_mm.runtime.served import Served
from edge_mm.runtime.versions import Catalog

log = logging.getLogger("edge_mm.swap")


class LoadFailed(EdgeError):
    """A version could not be loaded, warmed or checked; the versions that served still serve."""

    status = 409
    code = "load_failed"


class Repository:
    """The models' versions on disk and in the registry; one load, unload or rollback at a time."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        loaders: Mapping[str, Loader],
        options: Mapping[str, KindOptions],
        *,
        retire_timeout_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.loaders = loaders
        self.options = options
        # in-flight requests on an old version are given their own deadline to finish, and a little more
        self.retire_timeout_s = retire_timeout_s or settings["runtime.request_timeout_s"] + 5
        self.failures: dict[str, str] = {}  # model -> why its last load failed
        self.unloaded: set[str] = set()
        self.retiring: list[threading.Thread] = []
        self._lock = threading.Lock()

    def catalog(self) -> Catalog:
        return Catalog(self.settings.path("runtime.artifacts_dir"), self.settings.optional_path("runtime.verify_key"))

    def spec(self, name: str) -> ModelSpec:
        try:
            return self.settings.model(name)
        except KeyError:
            raise NotFound(f"model {name!r} is not in settings; only configured models can be loaded") from None

    def index(self) -> list[dict[str, Any]]:
        """Triton's repository index: every configured model's versions on disk, READY when served."""
        catalog = self.catalog()
        rows: list[dict[str, Any]] = []
        for spec in self.settings.models:
            served = self.registry.served_versions(spec.name)
            try:
                numbers = catalog.numbers(spec.name)
                rolled_back = catalog.rolled_back(spec.name)
            except ConfigError as exc:
                rows.append({"name": spec.name, "state": "UNAVAILABLE", "reason": str(exc)})
                continue
            for n in sorted(set(numbers) | set(served)):
                row: dict[str, Any] = {"name": spec.name, "version": str(n)}
                if n in served:
                    row["state"] = "READY"
                else:
                    row["state"] = "UNAVAILABLE"
                    row["reason"] = (
                        "rolled back"
                        if n in rolled_back
                        else "unloaded"
                        if spec.name in self.unloaded
                        else f"not selected by version_policy {spec.version_policy!r}"
                    )
                rows.append(row)
            if spec.name in self.failures:
                rows.append({"name": spec.name, "state": "UNAVAILABLE", "reason": self.failures[spec.name]})
        return rows

    def wanted(self, name: str) -> list[int]:
        """The versions of ``name`` its policy selects on disk now."""
        return self.catalog().selected(name, self.spec(name).version_policy)

    def load(self, name: str) -> dict[str, Any]:
        """Serve the versions of ``name`` its policy selects now; a summary of what changed.
        LoadFailed (what served still serves) when a new version cannot be loaded, warmed or checked."""
        spec = self.spec(name)
        with self._lock:
            return self._load(spec)

    def unload(self, name: str) -> dict[str, Any]:
        """Stop serving ``name``; its requests in flight finish, later ones get 404."""
        self.spec(name)
        with self._lock:
            gone = self.registry.remove(name)
            self.unloaded.add(name)
            self.registry.info.get("models", {}).pop(name, None)
            for served in gone.values():
                self._retire(served, None)
        log.info("model %s unloaded (versions %s)", name, sorted(gone))
        return {"name": name, "unloaded": sorted(gone)}

    def rollback(self, name: str) -> dict[str, Any]:
        """Turn away from the version ``latest`` serves now: the next lower version on disk serves instead.
        The version is remembered as rolled back (``<model>/rolled_back.json``) until a newer one arrives."""
        spec = self.spec(name)
        if spec.version_policy != "latest":
            raise LoadFailed(f"model {name!r} has version_policy {spec.version_policy!r}; rollback needs 'latest'")
        with self._lock:
            catalog = self.catalog()
            current = catalog.selected(name, "latest")
            if not current:
                raise LoadFailed(f"model {name!r} has no version on disk to roll back from")
            before = catalog.rolled_back(name)
            earlier = [n for n in catalog.numbers(name) if n < current[0] and n not in before]
            if not earlier:
                raise LoadFailed(f"model {name!r}: no version before {current[0]} is kept on disk to roll back to")
            catalog.set_rolled_back(name, before | {current[0]})
            try:
                result = self._load(spec)
            except LoadFailed:
                catalog.set_rolled_back(name, before)
                raise
        log.warning("model %s rolled back from version %d to %d", name, current[0], earlier[-1])
        return {**result, "rolled_back": current[0]}

    def wait_retired(self, timeout_s: float = 60) -> None:
        """Until every retired version has gone idle and been released (tests, benchmarks)."""
        for thread in list(self.retiring):
            thread.join(timeout_s)
        self.retiring = [t for t in self.retiring if t.is_alive()]

    def _load(self, spec: ModelSpec) -> dict[str, Any]:
        name = spec.name
        catalog = self.catalog()
        current = self.registry.served_versions(name)
        try:
            numbers = catalog.selected(name, spec.version_policy)
            if not numbers:
                raise ConfigError(f"model {name!r} has no version in {catalog.root}")
            versions = [catalog.version(name, n) for n in numbers]
            entries = {
                v.number: served_entry_for(spec, v.manifest, v.root, self.loaders, self.options) for v in versions
            }
        except ConfigError as exc:
            raise self._failed(name, str(exc)) from None
        fresh: dict[int, Served] = {}
        choices: dict[int, dict[str, Any]] = {}
        for v in versions:
            if v.number in current and current[v.number].entry.content_hash == entries[v.number].content_hash:
                continue  # this very version serves already
            try:
                fresh[v.number], choices[v.number] = self._load_checked(spec, v, entries[v.number])
            except Exception as exc:
                for served in fresh.values():
                    self._retire(served, None)
                reason = str(exc) if isinstance(exc, ConfigError | EdgeError) else f"{type(exc).__name__}: {exc}"
                log.exception("model %s: version %d failed to load", name, v.number)
                raise self._failed(name, f"version {v.number}: {reason}"[:600]) from None
        keep = {n: current[n] for n in numbers if n not in fresh}
        serving = {**keep, **fresh}
        self.registry.install(name, serving)
        self.failures.pop(name, None)
        self.unloaded.discard(name)
        default = max(serving)
        if default in choices:
            info = model_info(entries[default], choices[default])
            self.registry.info.setdefault("models", {})[name] = info
        if name in self.registry.info.get("models", {}):
            self.registry.info["models"][name].update(version=default, versions=sorted(serving))
        successor = serving[default]
        for n, old in current.items():
            if serving.get(n) is not old:
                self._retire(old, successor)
        log.info("model %s now serves versions %s (default %d)", name, sorted(serving), default)
        return {"name": name, "versions": sorted(serving), "loaded": sorted(fresh), "default": default}

    def _load_checked(self, spec: ModelSpec, version: Any, entry: Any) -> tuple[Served, dict[str, Any]]:
        """Loaded through the fidelity gate, warmed, its reference sample replayed: ready to serve."""
        settings = self.settings
        cuda = cuda_available_for(settings, [entry])
        _, concurrent = device_policy.cpu_threads(
            os.cpu_count() or 1,
            settings["runtime.intra_op_threads"],
            settings["runtime.concurrent_inferences"],
        )
        served, choice = load_served(spec, version, entry, settings, self.loaders, cuda=cuda, concurrent=concurrent)
        try:
            known = {n: s.entry for n, s in self.registry.models.items()}
            open_partners(served, settings, {**known, spec.name: entry})
            served.warm_ms = served.runner.warm()
            miss = reference_miss(served, version.root)
            if miss is not None:
                raise ConfigError(f"its self-check failed: {miss}")
        except BaseException:
            self._retire(served, None)
            raise
        log.info("model %s version %d warmed in %.0f ms", spec.name, version.number, served.warm_ms)
        return served, choice

    def _failed(self, name: str, reason: str) -> LoadFailed:
        self.failures[name] = reason
        log.error("model %s: load failed, what served still serves: %s", name, reason)
        return LoadFailed(f"model {name!r} was not loaded: {reason}")

    def _retire(self, served: Served, successor: Served | None) -> None:
        held = [served]  # the thread lets go of it before collecting, so it can be freed
        name, version = served.name, served.version

        def retire() -> None:
            t0 = time.monotonic()
            idle = held.pop().retire(successor, self.retire_timeout_s)
            release_memory()
            log.info(
                "model %s version %d released after %.1f s%s",
                name,
                version,
                time.monotonic() - t0,
                "" if idle else " (requests still running on it past the timeout)",
            )

        thread = threading.Thread(target=retire, name=f"retire-{name}-{version}", daemon=True)
        thread.start()
        self.retiring = [t for t in self.retiring if t.is_alive()] + [thread]


def release_memory() -> None:
    """Collect what a retired version left, return freed heap to the OS. The server froze what it loaded
    at start-up (gc.freeze, edge_mm/server.py), which the collector never frees: unfreeze, collect, and
    freeze what lives on (the versions serving now) again."""
    frozen = gc.get_freeze_count() > 0
    if frozen:
        gc.unfreeze()
    gc.collect()
    if frozen:
        gc.freeze()
    trim_heap()


class Poller(Periodic):
    """Every ``runtime.poll_s``: load each configured model whose selected versions on disk changed."""

    def __init__(self, repository: Repository, interval_s: float) -> None:
        super().__init__(interval_s, "version-poll")
        self.repository = repository
        self._tried: dict[str, tuple[int, ...]] = {}  # model -> the selection whose load failed (not retried)

    def poll_once(self) -> list[str]:
        """The models loaded by this pass."""
        repo, loaded = self.repository, []
        for spec in repo.settings.models:
            if spec.name in repo.unloaded or not repo.registry.ready:
                continue
            try:
                wanted = tuple(repo.wanted(spec.name))
            except (ConfigError, EdgeError) as exc:
                log.warning("version poll: model %s: %s", spec.name, exc)
                continue
            if not wanted or wanted == tuple(repo.registry.served_versions(spec.name)):
                continue
            if self._tried.get(spec.name) == wanted:
                continue  # failed before; a change on disk tries again
            try:
                repo.load(spec.name)
                loaded.append(spec.name)
                self._tried.pop(spec.name, None)
            except EdgeError:
                self._tried[spec.name] = wanted
        return loaded
