"""The optional ``[updates]`` poll: every ``updates.poll_s``, read the LAN source's index and pull and swap in
the bundles it lists that are new here, through the same checks as ``edge-mm pull`` (runtime/update_bundle.py).

The index (``updates.url``) is a small JSON document on any HTTP server::

    {"bundles": [{"model": "minilm", "url": "minilm-v2.tar", "sha256": "<the tar's sha256, hex>"}]}

``url`` may be relative to the index's own URL. For each configured model the last entry naming it is the one
wanted. A bundle whose tar does not match its ``sha256`` (cut short, or replaced since the index was written)
and a source that cannot be reached are tried again at the next poll; a bundle refused for what it holds
(signature, a file's hash, paths, size) is not downloaded again until the index lists another digest. A
pulled version is loaded as by ``POST /v2/repository/models/NAME/load``; if that fails it is marked rolled
back, as ``edge-mm pull`` does, and the version before it keeps serving.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from edge_mm.errors import ConfigError, EdgeError
from edge_mm.runtime.periodic import Periodic
from edge_mm.runtime.swap import Repository
from edge_mm.runtime.update_bundle import DownloadFailed, UpdateRefused, pull

log = logging.getLogger("edge_mm.update")

INDEX_MAX_BYTES = 1024 * 1024
_HEX = set("0123456789abcdef")


@dataclass(frozen=True)
class Offer:
    """One bundle the index lists: for ``model``, at ``url`` (absolute), whose tar has ``sha256`` (hex)."""

    model: str
    url: str
    sha256: str


def read_index(url: str, timeout_s: float) -> list[Offer]:
    """The index's entries in its order; DownloadFailed when it cannot be read, UpdateRefused when malformed."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = response.read(INDEX_MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise DownloadFailed(f"the update index {url} answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
        raise DownloadFailed(f"the update index {url} cannot be read ({type(exc).__name__}: {exc})") from None
    if len(body) > INDEX_MAX_BYTES:
        raise UpdateRefused(f"the update index {url} is over {INDEX_MAX_BYTES} bytes")
    try:
        entries = json.loads(body)["bundles"]
        offers = [
            Offer(str(e["model"]), urllib.parse.urljoin(url, str(e["url"])), str(e["sha256"]).lower()) for e in entries
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise UpdateRefused(
            f'the update index {url} is not {{"bundles": [{{"model", "url", "sha256"}}, ...]}} ({exc!r})'
        ) from None
    for offer in offers:
        if len(offer.sha256) != 64 or not set(offer.sha256) <= _HEX:
            raise UpdateRefused(f"the update index {url}: {offer.model}'s sha256 is not 64 hex digits")
    return offers


class UpdatePoller(Periodic):
    """Every ``updates.poll_s``: pull and load what the index at ``updates.url`` lists that is new here."""

    def __init__(self, repository: Repository) -> None:
        settings = repository.settings
        super().__init__(settings["updates.poll_s"], "update-poll")
        self.repository = repository
        self.url: str = settings["updates.url"]
        if not self.url:
            raise ConfigError("updates.poll_s is set but updates.url is empty: set the LAN source's index URL")
        if settings.optional_path("runtime.verify_key") is None:
            raise ConfigError(
                "updates.poll_s is set but runtime.verify_key is not: pulled updates must be signed, "
                "set the build's public key"
            )
        self.refused: dict[str, str] = {}  # sha256 -> why its bundle was refused (not downloaded again)
        self.done: set[str] = set()  # sha256s pulled (or found on disk already)
        self.source_down = False

    def poll_once(self) -> list[str]:
        """The models a new version of which serves after this pass."""
        repo = self.repository
        if not repo.registry.ready:
            return []
        try:
            offers = read_index(self.url, repo.settings["updates.timeout_s"])
        except DownloadFailed as exc:
            if not self.source_down:
                log.warning("update poll: %s; trying again every %g s", exc, self.interval_s)
            self.source_down = True
            return []
        except UpdateRefused as exc:
            log.error("update poll: %s", exc)
            return []
        if self.source_down:
            log.info("update poll: the update index %s answers again", self.url)
            self.source_down = False
        configured = {spec.name for spec in repo.settings.models}
        wanted = {offer.model: offer for offer in offers if offer.model in configured}  # the last one per model
        return [offer.model for offer in wanted.values() if self._take(offer)]

    def _take(self, offer: Offer) -> bool:
        if offer.sha256 in self.done or offer.sha256 in self.refused:
            return False
        repo = self.repository
        try:
            pulled = pull(repo.settings, offer.url, sha256=offer.sha256, model=offer.model)
        except DownloadFailed as exc:
            log.warning("update poll: %s; trying again at the next poll", exc)
            return False
        except UpdateRefused as exc:
            self.refused[offer.sha256] = str(exc)
            log.error("update poll: %s refused, what serves still serves: %s", offer.url, exc)
            return False
        self.done.add(offer.sha256)
        if not pulled.new or pulled.model not in {spec.name for spec in repo.settings.models}:
            return False
        try:
            repo.load(pulled.model)
        except EdgeError:  # logged by the repository, with the reason
            catalog = repo.catalog()
            catalog.set_rolled_back(pulled.model, catalog.rolled_back(pulled.model) | {pulled.version})
            log.error("update poll: %s version %d did not load; marked rolled back", pulled.model, pulled.version)
            return False
        log.info("update poll: %s version %d from %s serves", pulled.model, pulled.version, offer.url)
        return True
