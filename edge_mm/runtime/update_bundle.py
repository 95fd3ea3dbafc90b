"""`edge-mm pull URL`: fetch a signed version bundle from a LAN HTTP server, check all of it, then put it in place.

A bundle (build/version_bundle.py) is an uncompressed tar of one model version: ``manifest.json`` with one
model, ``manifest.sig``, and the files the manifest names. Nothing reaches the artifacts folder before every
check passed: the download streams to a temporary folder under ``<artifacts>/.incoming`` (same filesystem),
within ``updates.max_bundle_bytes``; the tar is unpacked there member by member, refusing absolute paths,
``..``, links, devices and anything over the size limit; the manifest's signature is checked with
``runtime.verify_key`` (required) and every file's sha256 against it, and no file may be there that the
manifest does not name. Only then one rename makes it ``<artifacts>/<model>/<n>/`` (n: one above the highest
version on disk). A cut connection, a full disk or any refusal leaves the artifacts folder as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from edge_mm.config import Settings
from edge_mm.errors import ConfigError
from edge_mm.manifest import MANIFEST_NAME, read_manifest
from edge_mm.runtime.versions import Catalog
from edge_mm.signing import SIGNATURE_NAME

log = logging.getLogger("edge_mm.update")

INCOMING = ".incoming"
CHUNK = 1 << 20
MAX_MEMBERS = 10_000
_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


class UpdateRefused(ConfigError):
    """A bundle that was not put in place, and why; the artifacts folder is unchanged."""


class DownloadFailed(UpdateRefused):
    """The source could not be read to the end (gone, cut, silent, an HTTP error): worth trying again later,
    unlike a bundle refused for what it holds."""


@dataclass(frozen=True)
class Pulled:
    model: str
    version: int
    new: bool  # False: the same model (content hash) is already the newest version on disk
    pruned: tuple[int, ...] = ()


def pull(settings: Settings, url: str, sha256: str | None = None, model: str | None = None) -> Pulled:
    """Download, check and place the bundle at ``url``; UpdateRefused (nothing changed) when any check fails.
    ``sha256``: the whole tar's digest as an update index lists it (runtime/update_poll.py), checked first;
    ``model``: the model the index says it holds (a bundle of another is refused, not placed)."""
    key = settings.optional_path("runtime.verify_key")
    if key is None:
        raise UpdateRefused("runtime.verify_key is not set: pulled updates must be signed, set the build's public key")
    root = settings.path("runtime.artifacts_dir")
    limit = settings["updates.max_bundle_bytes"]
    incoming = root / INCOMING
    incoming.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pull-", dir=incoming) as tmp:
        bundle, digest = download(url, Path(tmp) / "bundle.tar", limit, settings["updates.timeout_s"])
        if sha256 is not None and digest != sha256.lower():  # cut short, or replaced since the index was written
            raise DownloadFailed(f"{url}: the bundle's sha256 is {digest[:12]}..., the index says {sha256[:12]}...")
        staging = Path(tmp) / "version"
        unpack(bundle, staging, limit)
        bundle.unlink()
        found = check_version_folder(staging, key)
        if model is not None and found != model:
            raise UpdateRefused(f"{url} holds a version of model {found!r}, not of {model!r} as its index says")
        with _placing(root):  # one puller at a time picks the next number (edge-mm pull beside the poll)
            number, new = _place(root, key, found, staging)
    if not new:
        return Pulled(found, number, new=False)
    log.info("pulled %s version %d from %s", found, number, url)
    return Pulled(found, number, new=True, pruned=tuple(prune(settings, found)))


@contextlib.contextmanager
def _placing(root: Path) -> Iterator[None]:
    """An exclusive lock (flock on ``<artifacts>/.incoming.lock``) across processes and threads while a version
    is placed."""
    with open(root / f"{INCOMING}.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _place(root: Path, key: Path, model: str, staging: Path) -> tuple[int, bool]:
    """Rename ``staging`` to the model's next version folder: (its number, True); (the newest one's, False)
    when that holds the same content already (nothing placed)."""
    catalog = Catalog(root, key)
    numbers = catalog.numbers(model) if (root / model).is_dir() or (root / MANIFEST_NAME).is_file() else []
    if numbers:
        newest = catalog.version(model, numbers[-1]).manifest.models[model]
        if newest.content_hash == read_manifest(staging).models[model].content_hash:
            return numbers[-1], False
    number = (numbers[-1] if numbers else 0) + 1
    (root / model).mkdir(parents=True, exist_ok=True)
    os.rename(staging, root / model / str(number))  # atomic: the version appears whole or not at all
    return number, True


def download(url: str, dest: Path, limit: int, timeout_s: float) -> tuple[Path, str]:
    """Stream ``url`` into ``dest``, at most ``limit`` bytes; (dest, its sha256 hex). UpdateRefused when
    it is too big or cannot be stored, DownloadFailed when the source fails or the body is short."""
    if not url.startswith(("http://", "https://")):
        raise UpdateRefused(f"{url!r}: only http:// and https:// sources are pulled from")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(dest, "wb") as f:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > limit:
                raise UpdateRefused(f"the bundle is {int(length)} bytes, over updates.max_bundle_bytes ({limit})")
            got, digest = 0, hashlib.sha256()
            while chunk := response.read(CHUNK):
                got += len(chunk)
                digest.update(chunk)
                if got > limit:
                    raise UpdateRefused(f"the bundle is over updates.max_bundle_bytes ({limit}); download stopped")
                f.write(chunk)
    except urllib.error.HTTPError as exc:
        raise DownloadFailed(f"{url}: the update source answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
        raise DownloadFailed(f"{url}: the download failed ({type(exc).__name__}: {exc}); nothing was changed") from None
    except OSError as exc:  # a full disk while writing the temporary copy
        raise UpdateRefused(f"cannot store the download ({exc.strerror or exc}); nothing was changed") from None
    if length is not None and length.isdigit() and got != int(length):
        raise DownloadFailed(f"{url}: the download ended after {got} of {length} bytes; nothing was changed")
    return dest, digest.hexdigest()


def _member_path(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if not name or name.startswith("/") or "\\" in name or path.is_absolute() or ".." in path.parts:
        raise UpdateRefused(f"the bundle holds the entry {name!r}: only relative paths inside the bundle are allowed")
    return path


def unpack(bundle: Path, dest: Path, limit: int) -> None:
    """Unpack the tar's regular files into ``dest`` (new), refusing anything else and anything over ``limit``."""
    dest.mkdir()
    total = 0
    try:
        with tarfile.open(bundle, "r:") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise UpdateRefused(f"the bundle holds more than {MAX_MEMBERS} entries")
                path = _member_path(member.name)
                if member.isdir():
                    continue
                if not member.isreg():
                    raise UpdateRefused(
                        f"the bundle's entry {member.name!r} is a link or device; only files are allowed"
                    )
                total += member.size
                if total > limit:
                    raise UpdateRefused(f"the bundle unpacks to over updates.max_bundle_bytes ({limit})")
                target = dest.joinpath(*path.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    raise UpdateRefused(f"the bundle's entry {member.name!r} cannot be read")
                with source, open(target, "xb") as out:  # "x": an entry sent twice is refused
                    shutil.copyfileobj(source, out, CHUNK)
    except FileExistsError as exc:
        raise UpdateRefused(f"the bundle holds {exc.filename} twice") from None
    except (tarfile.TarError, EOFError) as exc:
        raise UpdateRefused(f"the bundle is not a complete tar ({exc}); nothing was changed") from None
    except OSError as exc:
        raise UpdateRefused(f"cannot unpack the bundle ({exc.strerror or exc}); nothing was changed") from None


def check_version_folder(folder: Path, key: Path) -> str:
    """The one model the unpacked ``folder`` holds, after its signature, every hash, and the absence of
    files the manifest does not name are checked; UpdateRefused otherwise."""
    try:
        manifest = read_manifest(folder, verify_key=key)
    except ConfigError as exc:
        raise UpdateRefused(f"the bundle's manifest is refused: {exc}") from None
    if len(manifest.models) != 1:
        raise UpdateRefused(f"a bundle holds one model version, this one {len(manifest.models)} models")
    ((model, entry),) = manifest.models.items()
    if not set(model) <= _NAME_OK:
        raise UpdateRefused(f"the bundle's model name {model!r} is not allowed")
    named = {MANIFEST_NAME, SIGNATURE_NAME}
    for ref in entry.all_files():
        _member_path(ref.path)
        try:
            ref.resolve(folder)
        except ConfigError as exc:
            raise UpdateRefused(f"the bundle's file {ref.path} is refused: {exc}") from None
        named.add(PurePosixPath(ref.path).as_posix())
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}
    extra = sorted(present - named)
    if extra:
        raise UpdateRefused(f"the bundle holds files its manifest does not name: {extra[:3]}")
    return model


def prune(settings: Settings, model: str) -> list[int]:
    """Delete the oldest version folders beyond ``updates.keep_versions``, never one the policy serves."""
    catalog = Catalog(settings.path("runtime.artifacts_dir"), settings.optional_path("runtime.verify_key"))
    folder = catalog.folder(model)
    numbers = sorted(int(n) for n in os.listdir(folder) if n.isdigit() and (folder / n).is_dir())
    try:
        policy = settings.model(model).version_policy
    except KeyError:
        policy = "latest"
    try:
        serving = set(catalog.selected(model, policy))
    except ConfigError:
        serving = set()
    keep = set(numbers[-settings["updates.keep_versions"] :]) | serving
    gone = []
    for n in numbers:
        if n in keep:
            continue
        trash = catalog.root / INCOMING / f"pruned-{model}-{n}"
        os.rename(folder / str(n), trash)  # gone from the catalog at once, then deleted
        shutil.rmtree(trash, ignore_errors=True)
        gone.append(n)
    return gone


def rollback_on_disk(settings: Settings, model: str) -> tuple[int, int]:
    """(from, to): mark the version ``latest`` serves as rolled back, for the next start (no server running)."""
    catalog = Catalog(settings.path("runtime.artifacts_dir"), settings.optional_path("runtime.verify_key"))
    current = catalog.selected(model, "latest")
    before = catalog.rolled_back(model)
    earlier = [n for n in catalog.numbers(model) if current and n < current[0] and n not in before]
    if not earlier:
        raise ConfigError(f"model {model!r}: no earlier version is kept on disk to roll back to")
    catalog.set_rolled_back(model, before | {current[0]})
    return current[0], earlier[-1]
