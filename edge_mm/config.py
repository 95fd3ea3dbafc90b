"""Settings as data: one table gives defaults, types, help, TOML keys, env names and docs.

Precedence: table defaults <- settings.toml <- ``EDGE_MM_<SECTION>_<KEY>`` environment.
The ``[[models]]`` list has its own table (:data:`MODEL_SETTINGS`); models come from TOML only.
Nothing is read at import time: call :func:`load_settings`.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_mm.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
ALLOCATORS = ("auto", "jemalloc", "glibc")  # runtime/malloc.py
QUANTIZATIONS = ("int8", "none")
ARTIFACT_BACKENDS = ("auto", "torchscript", "onnxruntime")


@dataclass(frozen=True)
class Setting:
    """One scalar setting: ``key`` is ``section.name``."""

    key: str
    default: Any
    type: type
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None

    @property
    def env(self) -> str:
        return "EDGE_MM_" + self.key.replace(".", "_").upper()


MiB = 1024 * 1024

SETTINGS: tuple[Setting, ...] = (
    Setting("server.host", "127.0.0.1", str, "Address to bind. Use 0.0.0.0 to serve the LAN (set api_keys then)."),
    Setting("server.port", 8080, int, "TCP port; 0 picks a free one (printed at start-up).", minimum=0),
    Setting(
        "server.threads", 16, int, "Waitress worker threads (HTTP concurrency, not inference concurrency).", minimum=1
    ),
    Setting(
        "server.gil_switch_interval_ms",
        1.0,
        float,
        "How long a Python thread waiting for the interpreter lock waits before asking the holder to let go "
        "(sys.setswitchinterval, set at start by `edge-mm serve`, the executable and each Ray Serve replica; "
        "Python's own is 5 ms). "
        "Shorter hands batched work to the forward passes sooner: see docs/numbers.md.",
        minimum=0.05,
    ),
    Setting(
        "server.max_waiting",
        0,
        int,
        "Inference requests that may wait for a worker thread; one more is answered 503 with Retry-After at "
        "once. 0 derives 4 x threads. Health probes and /metrics never wait behind them.",
        minimum=0,
    ),
    Setting(
        "server.max_expected_s",
        0.0,
        float,
        "A request is answered 503 at once when answering it would take longer than this (s), judged from the "
        "queue ahead of it and the measured time per request. 0 derives half of runtime.request_timeout_s.",
        minimum=0,
    ),
    Setting("server.max_body_bytes", 32 * MiB, int, "Largest request body accepted; larger gets 413.", minimum=1024),
    Setting("server.max_text_chars", 20000, int, "Longest single text accepted; longer gets 413.", minimum=1),
    Setting("server.max_items", 64, int, "Most texts or labels in one request; more gets 413.", minimum=1),
    Setting(
        "server.max_upload_bytes",
        20 * MiB,
        int,
        "Largest single uploaded file (image, audio, video, or its base64 text); larger gets 413.",
        minimum=1024,
    ),
    Setting(
        "server.max_image_pixels",
        40_000_000,
        int,
        "Most pixels (width x height, read from the header before decoding) in an image or video frame; more gets 413.",
        minimum=1024,
    ),
    Setting(
        "server.max_request_pixels",
        64_000_000,
        int,
        "Most pixels in all images of one request together (read from the headers before decoding); more gets 413.",
        minimum=1024,
    ),
    Setting(
        "server.max_label_chars",
        500,
        int,
        "Longest candidate label (zero-shot); longer gets 413.",
        minimum=1,
    ),
    Setting(
        "server.max_audio_seconds",
        600.0,
        float,
        "Longest audio clip accepted by /v1/voice-activity (s); longer gets 413.",
        minimum=0.1,
    ),
    Setting(
        "server.max_video_seconds",
        300.0,
        float,
        "Longest video accepted by /v1/video (s); longer gets 413.",
        minimum=0.1,
    ),
    Setting(
        "server.max_video_frames",
        64,
        int,
        "Most frames sampled from one video; sampling spreads out to stay within it.",
        minimum=1,
    ),
    Setting(
        "server.api_keys",
        [],
        list,
        "API keys; when set, inference routes need 'Authorization: Bearer <key>' or 'X-API-Key'.",
    ),
    Setting(
        "server.info_requires_key",
        True,
        bool,
        "With api_keys set, /info needs a key too (it shows versions, limits and hashes); /health/* stays open.",
    ),
    Setting(
        "server.metrics_requires_key",
        True,
        bool,
        "With api_keys set, /metrics needs a key too (Prometheus sends it from its scrape config); false opens it.",
    ),
    Setting(
        "server.cors_origins",
        [],
        list,
        "Origins (e.g. 'http://192.168.1.20:3000') whose browser pages may call the API (CORS); "
        "'*' allows any. Empty: CORS off.",
    ),
    Setting(
        "server.connection_limit",
        1000,
        int,
        "Most open client connections. At the limit the connection that has waited longest without "
        "a request being served (idle keep-alive, or still sending its request) is closed to admit a new one.",
        minimum=10,
    ),
    Setting(
        "server.header_timeout_s",
        10.0,
        float,
        "Time a client has to send its request line and headers (s); slower connections are closed (slowloris).",
        minimum=1,
    ),
    Setting(
        "server.channel_timeout_s",
        60,
        int,
        "An idle connection (no bytes in or out, no request running) is closed after this long (s).",
        minimum=1,
    ),
    Setting("server.cleanup_interval_s", 1, int, "How often the header and idle timeouts are checked (s).", minimum=1),
    Setting("server.backlog", 1024, int, "Listen backlog: connections the kernel queues before accept.", minimum=1),
    Setting("server.max_header_bytes", 65536, int, "Longest request line plus headers; longer gets 431.", minimum=4096),
    Setting("server.recv_bytes", 65536, int, "Bytes read from a socket per call.", minimum=4096),
    Setting(
        "server.inbuf_overflow_bytes",
        512 * 1024,
        int,
        "Request bodies larger than this are buffered in a temporary file instead of memory.",
        minimum=65536,
    ),
    Setting(
        "server.outbuf_overflow_bytes",
        MiB,
        int,
        "Responses larger than this are buffered in a temporary file instead of memory.",
        minimum=65536,
    ),
    Setting(
        "server.drain_timeout_s",
        30.0,
        float,
        "On SIGTERM/SIGINT: how long requests already received may take to finish before the process exits (s).",
        minimum=0,
    ),
    Setting(
        "runtime.device",
        "auto",
        str,
        "auto (each model on CUDA when present and it has a CUDA variant, else CPU), cpu, or cuda (refuse to "
        "start without CUDA; models with no CUDA variant serve on CPU and /info says why). A model's own "
        "device overrides it.",
        choices=DEVICES,
    ),
    Setting(
        "runtime.artifacts_dir",
        "build/artifacts",
        str,
        "Folder holding manifest.json and the model artifacts (relative to the settings file).",
    ),
    Setting(
        "runtime.faces_db",
        "faces.db",
        str,
        "SQLite file of the registered faces (face-recognition models; descriptors only, no photos), relative "
        "to the settings file.",
    ),
    Setting(
        "runtime.verify_key",
        "",
        str,
        "Ed25519 public key file (PEM, from 'edge-mm keygen'); when set, a manifest without a valid "
        "manifest.sig stops start-up. Empty: not checked. Keep it where the artifacts' writers cannot write.",
    ),
    Setting(
        "runtime.intra_op_threads",
        0,
        int,
        "torch intra-op threads per inference; 0 derives it from the core count.",
        minimum=0,
    ),
    Setting(
        "runtime.concurrent_inferences",
        0,
        int,
        "Inferences running at once per model; 0 derives it from the core count.",
        minimum=0,
    ),
    Setting(
        "runtime.solo_threads",
        0,
        int,
        "Threads of an image classifier's or text embedding model's forward pass (ONNX Runtime) that starts while it is the "
        "only request being served; the model keeps a second session for it (a second copy of its weights: 9 MB "
        "for EfficientNet-Lite0, about 30 MB for MiniLM). 0: every core; 1: off (every pass on "
        "runtime.intra_op_threads).",
        minimum=0,
    ),
    Setting(
        "runtime.queue_size",
        64,
        int,
        "Requests waiting per model beyond those running; when full the server answers 503 at once.",
        minimum=0,
    ),
    Setting(
        "runtime.request_timeout_s",
        30.0,
        float,
        "Deadline for a request waiting plus running; past it the server answers 504.",
        minimum=0.1,
    ),
    Setting(
        "runtime.fidelity_check",
        True,
        bool,
        "At start-up, replay each int8 model's fidelity sample (fidelity.json) on this CPU against the build's "
        "gates; on a miss serve the next variant (down to fp32 compute). /info and `edge-mm check` show the result.",
    ),
    Setting(
        "runtime.allocator",
        "auto",
        str,
        "Memory allocator of `edge-mm serve`: auto (jemalloc where the bundle or checkout has it, else glibc), "
        "jemalloc (refuse to start without it) or glibc. jemalloc hands back the memory a retired model version "
        "leaves fragmented; the server re-executes itself once at start to preload it. /info says which serves.",
        choices=ALLOCATORS,
    ),
    Setting(
        "runtime.serve_after_failed_warmup",
        False,
        bool,
        "When a model's warm-up fails: false stops the server (exit code 3, the log names the model and the "
        "error); true keeps it running, live but never ready (/health/ready says which model failed).",
    ),
    Setting(
        "runtime.micro_batching",
        True,
        bool,
        "Run concurrent requests for one model together in one forward pass (see docs/numbers.md).",
    ),
    Setting(
        "runtime.max_batch",
        16,
        int,
        "Most items (texts, images) per forward pass; larger requests run in several passes.",
        minimum=1,
    ),
    Setting(
        "runtime.max_batch_wait_ms",
        0.0,
        float,
        "How long a forward pass waits for more requests to batch with (ms).",
        minimum=0,
    ),
    Setting(
        "runtime.poll_s",
        0.0,
        float,
        "Every this many seconds, look for model versions added to or rolled back in the artifacts folder and "
        "swap them in without stopping (docs/model-versions.md). 0: off; the repository API still loads them.",
        minimum=0,
    ),
    Setting(
        "updates.keep_versions",
        3,
        int,
        "Versions of a model kept on disk after 'edge-mm pull' adds one (the serving one is always kept); older "
        "ones are deleted. Rollback can go back only to versions still kept.",
        minimum=2,
    ),
    Setting(
        "updates.max_bundle_bytes",
        2048 * MiB,
        int,
        "Largest update bundle 'edge-mm pull' accepts (downloaded and unpacked size each); larger is refused.",
        minimum=1024,
    ),
    Setting(
        "updates.timeout_s",
        30.0,
        float,
        "'edge-mm pull': how long the update source may stay silent before the download is abandoned (s).",
        minimum=0.1,
    ),
    Setting(
        "updates.url",
        "",
        str,
        "The LAN update source's index (JSON listing each model's signed bundle and its sha256; "
        "docs/model-versions.md), e.g. http://192.168.1.10:8000/index.json. Read only when updates.poll_s > 0.",
    ),
    Setting(
        "updates.poll_s",
        0.0,
        float,
        "Every this many seconds the server reads updates.url and pulls, checks (as 'edge-mm pull') and swaps in "
        "the bundles listed there that are new. 0: off. Needs runtime.verify_key.",
        minimum=0,
    ),
    Setting(
        "ray.address",
        "",
        str,
        "serve --engine ray: the Ray cluster to join ('auto': the one 'ray start' made on this machine, or "
        "'host:port' of its head); empty starts a one-machine Ray inside the command.",
    ),
    Setting(
        "ray.proxy_location",
        "EveryNode",
        str,
        "Where Ray Serve's HTTP proxy (server.host:server.port) runs: EveryNode or HeadOnly.",
        choices=("EveryNode", "HeadOnly"),
    ),
    Setting(
        "ray.ingress_replicas",
        1,
        int,
        "Replicas of the HTTP ingress (parses requests, runs tasks); one runs on the head node, which a "
        "cluster needs anyway, so losing a worker node loses no request inside the ingress.",
        minimum=1,
    ),
    Setting(
        "ray.replicas", 1, int, "Replicas per model; with max_replicas above it, the autoscaling minimum.", minimum=1
    ),
    Setting(
        "ray.max_replicas",
        0,
        int,
        "Autoscaling on ongoing requests up to this many replicas per model; 0 or <= replicas: a fixed count.",
        minimum=0,
    ),
    Setting(
        "ray.target_ongoing_requests",
        2.0,
        float,
        "Autoscaling target: requests running or queued per replica.",
        minimum=0.1,
    ),
    Setting("ray.upscale_delay_s", 30.0, float, "How long load must stay high before adding replicas (s).", minimum=0),
    Setting(
        "ray.num_cpus",
        1.0,
        float,
        "Ray CPUs reserved per model replica; fractions let several replicas share a node's CPUs.",
        minimum=0,
    ),
    Setting("ray.num_gpus", 0.0, float, "Ray GPUs per model replica (CUDA variant when > 0).", minimum=0),
    Setting(
        "ray.models",
        {},
        dict,
        "Per-model overrides of replicas, max_replicas, target_ongoing_requests, upscale_delay_s, num_cpus, "
        "num_gpus: a table per model name, e.g. [ray.models.minilm] replicas = 2 (environment: JSON).",
    ),
    Setting(
        "build.packages_dir",
        "build/models",
        str,
        "Folder where model packages are installed (pip --target) for 'package:' sources.",
    ),
    Setting(
        "events.snapshot_dir",
        "streams/snapshots",
        str,
        "Folder of the event snapshots (JPEG, boxes drawn), relative to the settings file.",
    ),
    Setting(
        "events.snapshot_budget_mb",
        256.0,
        float,
        "Most disk the event snapshots may use (MB); the oldest go first. 0 keeps none.",
        minimum=0,
    ),
    Setting("events.max_streams", 32, int, "Most streams (settings and /v1/streams together).", minimum=1),
    Setting(
        "events.max_listeners", 4, int, "Most Server-Sent Events and MJPEG clients at once (more get 503).", minimum=1
    ),
    Setting(
        "events.queue_size",
        1000,
        int,
        "Events kept per output (MQTT, each webhook) while it cannot deliver; the oldest are dropped and counted.",
        minimum=1,
    ),
    Setting("mqtt.host", "", str, "MQTT broker host for stream events; empty: no MQTT."),
    Setting("mqtt.port", 1883, int, "MQTT broker port.", minimum=1),
    Setting("mqtt.topic_prefix", "edge-mm", str, "Topics: <prefix>/<stream>/events, <prefix>/availability, ..."),
    Setting("mqtt.username", "", str, "MQTT user name (empty: none)."),
    Setting("mqtt.password", "", str, "MQTT password (set it with EDGE_MM_MQTT_PASSWORD rather than in the file)."),
    Setting("mqtt.tls", False, bool, "Connect to the broker over TLS."),
    Setting("mqtt.ca_file", "", str, "CA certificates for mqtt.tls (empty: the system's)."),
    Setting("mqtt.client_id", "", str, "MQTT client id (empty: a random one)."),
    Setting(
        "mqtt.discovery_prefix",
        "",
        str,
        "Home Assistant MQTT discovery: announce each stream's label counts as sensors under this prefix "
        "(Home Assistant's default is 'homeassistant'); empty: off.",
    ),
    Setting("webhooks.urls", [], list, "URLs each stream event is POSTed to (JSON)."),
    Setting(
        "webhooks.secret",
        "",
        str,
        "Signs each webhook body: header X-Edge-MM-Signature: sha256=<HMAC-SHA256 hex>; empty: unsigned.",
    ),
    Setting("webhooks.timeout_s", 5.0, float, "A webhook POST slower than this fails and is retried (s).", minimum=0.1),
    Setting("webhooks.retries", 5, int, "Retries per webhook event (exponential backoff with jitter).", minimum=0),
    Setting("webhooks.backoff_s", 0.5, float, "First webhook retry delay (s); it doubles per retry.", minimum=0.01),
    Setting(
        "build.allow_download",
        False,
        bool,
        "Let 'hf:' sources download when missing from the local cache (build machines only).",
    ),
)


@dataclass(frozen=True)
class ModelSetting:
    key: str
    default: Any
    type: type
    help: str


MODEL_SETTINGS: tuple[ModelSetting, ...] = (
    ModelSetting("name", None, str, "Name used in URLs and the 'model' field; letters, digits, '-', '_'."),
    ModelSetting("task", None, str, "The model kind: one of those listed below (edge_mm/tasks/table.py)."),
    ModelSetting(
        "source", None, str, "'package:<module>/<subdir>', 'hf:<model id>' (local cache only) or a folder path."
    ),
    ModelSetting(
        "quantization",
        "int8",
        str,
        "CPU variant: int8 (dynamic on Linear layers; for conv image classifiers also a static int8 ONNX "
        "Runtime graph, gated on held-out photos) or none (fp32).",
    ),
    ModelSetting("max_length", 256, int, "Longest token sequence per forward pass (text models)."),
    ModelSetting(
        "keep_fp32",
        [],
        list,
        "Module names (prefixes) kept in fp32 when quantizing. The ONNX Runtime candidate first tries every "
        "layer in int8 and keeps these only if it misses the fidelity targets without them.",
    ),
    ModelSetting(
        "smooth_alpha", 0.8, float, "Activation smoothing before int8 (SmoothQuant migration strength, 0 turns it off)."
    ),
    ModelSetting("min_mean_cosine", 0.99, float, "Embeddings: int8 vs fp32 mean cosine the build must reach."),
    ModelSetting("min_min_cosine", 0.95, float, "Embeddings: int8 vs fp32 worst-case cosine the build must reach."),
    ModelSetting("min_top1_agreement", 0.95, float, "Classifiers: int8 vs fp32 top-1 agreement the build must reach."),
    ModelSetting("max_prob_diff", 0.1, float, "Classifiers: largest int8 vs fp32 probability difference allowed."),
    ModelSetting(
        "auto_keep_fp32",
        True,
        bool,
        "When int8 misses a target, keep the most sensitive Linear layers in fp32 until it passes.",
    ),
    ModelSetting(
        "artifact_backend",
        "auto",
        str,
        "CPU artifact: auto (the build measures TorchScript and ONNX Runtime and serves the faster one that "
        "passes the fidelity targets), torchscript or onnxruntime. CUDA always serves TorchScript.",
    ),
    ModelSetting(
        "options",
        {},
        dict,
        "The model kind's options. Serve-time ones (e.g. top_k, hypothesis_template, min_face_size, stride) "
        "are read at every start and checked then; build-time ones (e.g. arch, labels, pooling, classifier, "
        "class_template, image_size) shape the artifacts: change them, then run 'edge-mm build' (the server "
        "refuses to start until then). Each kind's are listed below.",
    ),
    ModelSetting(
        "device",
        "inherit",
        str,
        "Serve-time device for this model: inherit (runtime.device), auto, cpu or cuda (this model on CUDA "
        "or refuse to start). Not part of the build.",
    ),
    ModelSetting(
        "version_policy",
        "latest",
        str,
        "Which versions of the model serve (docs/model-versions.md): latest (the highest not rolled back), all, "
        "or version numbers such as '3' or '2,3'. A request names one as 'name@3'; without it the highest serves.",
    ),
)
# Settings read when serving only: changing them does not rebuild the model.
SERVE_TIME_MODEL_SETTINGS = frozenset({"device", "version_policy"})
MODEL_DEVICES = ("inherit", *DEVICES)

# [[streams]]: camera streams analysed continuously (edge_mm/streams; also managed at /v1/streams)
STREAM_SETTINGS: tuple[ModelSetting, ...] = (
    ModelSetting("id", None, str, "Name used in URLs and MQTT topics; letters, digits, '-', '_'."),
    ModelSetting("url", None, str, "rtsp://user:pass@cam/..., http(s):// MJPEG or snapshot URL, or a video file path."),
    ModelSetting("source", "auto", str, "auto (by scheme and answer type), rtsp, mjpeg, snapshot or file."),
    ModelSetting(
        "tasks",
        None,
        list,
        "face-detection, face-recognition (faces named by a registered userid), object-detection, "
        "image-classification (the top label, the whole frame) and/or ocr (each text line); unset: "
        "faces, plus objects when a detector is served.",
    ),
    ModelSetting("fps", 2.0, float, "Frames analysed per second (the newest frame each time)."),
    ModelSetting("min_confidence", 0.5, float, "Detections scored lower are ignored."),
    ModelSetting("labels", [], list, 'Labels that make events (e.g. ["person", "face"]); empty: all.'),
    ModelSetting(
        "zones",
        [],
        list,
        "Polygons [{name, points = [[x, y], ...]}] px; an object counts when its box's bottom centre is inside one.",
    ),
    ModelSetting("min_area", 0.0, float, "Boxes smaller than this (px^2) are ignored."),
    ModelSetting("min_frames", 2, int, "Frames an object must be seen before its event starts."),
    ModelSetting("end_after_s", 3.0, float, "An event ends when its object has been gone this long (s)."),
    ModelSetting("interval_s", 1.0, float, "Snapshot URLs: seconds between polls."),
    ModelSetting("transport", "tcp", str, "RTSP transport: tcp or udp."),
    ModelSetting("loop", True, bool, "Video files start again at their end."),
    ModelSetting("face_model", None, str, "The face-detection model (unset: the first served)."),
    ModelSetting("recognition_model", None, str, "The face-recognition model (unset: the first served)."),
    ModelSetting("object_model", None, str, "The object-detection model (unset: the first served)."),
    ModelSetting("classification_model", None, str, "The image-classification model (unset: the first served)."),
    ModelSetting("ocr_model", None, str, "The OCR model (unset: the first served)."),
    ModelSetting("enabled", True, bool, "false keeps the stream declared but not read."),
)

_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def _model_default(key: str) -> Any:
    """A :class:`ModelSpec` field's default, read from :data:`MODEL_SETTINGS` (a list becomes a tuple, a dict a
    fresh copy per spec)."""
    default = next(m.default for m in MODEL_SETTINGS if m.key == key)
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default))
    return field(default=tuple(default) if isinstance(default, list) else default)


@dataclass(frozen=True)
class ModelSpec:
    """One ``[[models]]`` table; the defaults are :data:`MODEL_SETTINGS`'s (the one place to change them)."""

    name: str
    task: str
    source: str
    quantization: str = _model_default("quantization")
    max_length: int = _model_default("max_length")
    keep_fp32: tuple[str, ...] = _model_default("keep_fp32")
    smooth_alpha: float = _model_default("smooth_alpha")
    min_mean_cosine: float = _model_default("min_mean_cosine")
    min_min_cosine: float = _model_default("min_min_cosine")
    min_top1_agreement: float = _model_default("min_top1_agreement")
    max_prob_diff: float = _model_default("max_prob_diff")
    auto_keep_fp32: bool = _model_default("auto_keep_fp32")
    artifact_backend: str = _model_default("artifact_backend")
    options: Mapping[str, Any] = _model_default("options")
    device: str = _model_default("device")
    version_policy: str = _model_default("version_policy")

    def build_fingerprint(self, serve_options: Collection[str] = ()) -> dict[str, Any]:
        """What a build of this model depends on from the settings: all but the serve-time settings and
        the ``serve_options`` (the model kind's serve-time option keys, from the task table)."""
        fingerprint = {
            k.key: _jsonable(getattr(self, k.key)) for k in MODEL_SETTINGS if k.key not in SERVE_TIME_MODEL_SETTINGS
        }
        fingerprint["options"] = {k: v for k, v in fingerprint["options"].items() if k not in serve_options}
        return fingerprint


@dataclass(frozen=True)
class Settings:
    values: Mapping[str, Any]
    models: tuple[ModelSpec, ...]
    base_dir: Path
    streams: tuple[Mapping[str, Any], ...] = ()  # [[streams]] tables, keys checked; edge_mm/streams/spec.py validates

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def path(self, key: str) -> Path:
        """A path setting resolved against the settings file's folder."""
        p = Path(self.values[key])
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def optional_path(self, key: str) -> Path | None:
        """Like :meth:`path`, but None when the setting is empty (off)."""
        return self.path(key) if self.values[key] else None

    def model(self, name: str) -> ModelSpec:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    def replace(self, **overrides: Any) -> Settings:
        """A copy with ``section_key=value`` overrides, validated."""
        values = dict(self.values)
        for k, v in overrides.items():
            key = k.replace("__", ".")
            values[key] = _coerce(_BY_KEY[key], v, "override")
        return Settings(values=values, models=self.models, base_dir=self.base_dir, streams=self.streams)


_BY_KEY = {s.key: s for s in SETTINGS}


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, Mapping):
        return dict(v)
    return v


def _coerce(s: Setting, value: Any, origin: str) -> Any:
    """Check/convert one value; raise ConfigError naming key, value and what is allowed."""
    where = f"{s.key} (from {origin})"
    try:
        value = _CONVERTERS.get(s.type, _to_str)(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not a valid {s.type.__name__}") from None
    if s.choices and value not in s.choices:
        raise ConfigError(f"{where}: {value!r} is not allowed; use one of {', '.join(s.choices)}")
    if s.minimum is not None and value < s.minimum:
        raise ConfigError(f"{where}: {value!r} is too small; the minimum is {s.minimum:g}")
    return value


def _to_bool(value: Any) -> bool:
    """A bool, or one of 1/0/true/false/yes/no in any case (TOML or environment)."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, str) or value.strip().lower() not in ("1", "0", "true", "false", "yes", "no"):
        raise ValueError
    return value.strip().lower() in ("1", "true", "yes")


def _to_list(value: Any) -> list[str]:
    """A list of strings, or one comma-separated string (environment)."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError
    return value


def _to_dict(value: Any) -> dict[str, Any]:
    """A table (TOML) or a JSON object (environment)."""
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, dict):
        raise ValueError
    return value


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError
    return int(value)


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError
    return float(value)


def _to_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError
    return value


# Setting.type -> converter; each raises ValueError or TypeError for a value it cannot take.
_CONVERTERS: dict[type, Callable[[Any], Any]] = {
    bool: _to_bool,
    list: _to_list,
    dict: _to_dict,
    int: _to_int,
    float: _to_float,
}


def _check_version_policy(where: str, policy: str) -> None:
    """latest, all, or version numbers '3' / '2,3' (runtime/versions.py reads it)."""
    if policy not in ("latest", "all") and not all(p.strip().isdigit() and int(p) >= 1 for p in policy.split(",")):
        raise ConfigError(f"{where}.version_policy: {policy!r} is not allowed; use latest, all, or versions like '2,3'")


def _model_spec(raw: Any, index: int) -> ModelSpec:
    where = f"models[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table ([[models]]), got {raw!r}")
    known = {m.key for m in MODEL_SETTINGS}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(known)}")
    values: dict[str, Any] = {}
    for m in MODEL_SETTINGS:
        v = raw.get(m.key, m.default)
        if v is None:
            raise ConfigError(f"{where}.{m.key} is required: {m.help}")
        if m.type is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, m.type) or (m.type is int and isinstance(v, bool)):
            raise ConfigError(f"{where}.{m.key}: {v!r} is not a {m.type.__name__}; {m.help}")
        values[m.key] = v
    name = values["name"]
    if not name or not set(name) <= _NAME_OK:
        raise ConfigError(f"{where}.name: {name!r} is not allowed; use letters, digits, '-' and '_'")
    if not 0.0 <= values["smooth_alpha"] <= 1.0:
        raise ConfigError(f"{where}.smooth_alpha: {values['smooth_alpha']} is out of range; use 0..1 (0 = off)")
    for key, allowed in (
        ("quantization", QUANTIZATIONS),
        ("artifact_backend", ARTIFACT_BACKENDS),
        ("device", MODEL_DEVICES),
    ):
        if values[key] not in allowed:
            raise ConfigError(f"{where}.{key}: {values[key]!r} is not allowed; use one of {', '.join(allowed)}")
    _check_version_policy(where, values["version_policy"])
    if not 8 <= values["max_length"] <= 8192:
        raise ConfigError(f"{where}.max_length: {values['max_length']} is out of range; use 8..8192")
    values["keep_fp32"] = tuple(values["keep_fp32"])
    return ModelSpec(**values)


def load_settings(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read settings: defaults, then the TOML file (if any), then EDGE_MM_* variables."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    base_dir = Path.cwd()
    if path is not None:
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"settings file {p} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"settings file {p} is not valid TOML: {exc}") from None
        base_dir = p.resolve().parent
    sections = {s.key.split(".")[0] for s in SETTINGS}
    unknown = set(raw) - sections - {"models", "streams"}
    if unknown:
        raise ConfigError(
            f"unknown section(s) {sorted(unknown)} in settings; allowed: {sorted(sections | {'models', 'streams'})}"
        )
    values: dict[str, Any] = {}
    for s in SETTINGS:
        section, name = s.key.split(".")
        table = raw.get(section, {})
        value, origin = s.default, "default"
        if name in table:
            value, origin = table[name], "settings.toml"
        if s.env in env:
            value, origin = env[s.env], f"${s.env}"
        values[s.key] = _coerce(s, value, origin)
    for section in sections:
        extra = set(raw.get(section, {})) - {s.key.split(".")[1] for s in SETTINGS if s.key.startswith(section + ".")}
        if extra:
            raise ConfigError(f"unknown key(s) {sorted(extra)} in [{section}]; see docs/settings.md")
    models = tuple(_model_spec(m, i) for i, m in enumerate(raw.get("models", [])))
    names = [m.name for m in models]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ConfigError(f"models: duplicate name(s) {sorted(dupes)}")
    return Settings(values=values, models=models, base_dir=base_dir, streams=_stream_tables(raw.get("streams", [])))


def _stream_tables(raw: Any) -> tuple[dict[str, Any], ...]:
    """The ``[[streams]]`` tables with their keys checked (the values are checked by edge_mm/streams/spec.py)."""
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise ConfigError("streams: expected [[streams]] tables")
    known = {s.key for s in STREAM_SETTINGS}
    for i, table in enumerate(raw):
        unknown = set(table) - known
        if unknown:
            raise ConfigError(f"streams[{i}]: unknown key(s) {sorted(unknown)}; allowed: {sorted(known)}")
        for s in STREAM_SETTINGS:
            if s.default is None and s.key in ("id", "url") and s.key not in table:
                raise ConfigError(f"streams[{i}].{s.key} is required: {s.help}")
    return tuple(raw)


def settings_markdown(
    model_kinds: Mapping[str, str] | None = None, model_options: Sequence[tuple[str, str, str, Any, str]] = ()
) -> str:
    """The settings reference (docs/settings.md), generated from the tables; ``model_kinds``
    (kind -> help, from the task table) lists the allowed ``task`` values, ``model_options``
    (kind, key, "serve"/"build", default, help) each kind's ``options``."""
    lines = [
        "# Settings",
        "",
        "Generated from `edge_mm/config.py` by `edge-mm settings-doc`; a test keeps it in sync.",
        "Precedence: defaults <- `settings.toml` <- environment variables.",
        "",
        "| key | env | default | help |",
        "|---|---|---|---|",
    ]
    for s in SETTINGS:
        section, name = s.key.split(".")
        lines.append(f"| `[{section}] {name}` | `{s.env}` | `{s.default!r}` | {s.help} |")
    lines += ["", "## `[[models]]` entries", "", "| key | default | help |", "|---|---|---|"]
    for m in MODEL_SETTINGS:
        default = "required" if m.default is None else f"`{m.default!r}`"
        lines.append(f"| `{m.key}` | {default} | {m.help} |")
    lines += ["", "## `[[streams]]` entries (see docs/streams.md)", "", "| key | default | help |", "|---|---|---|"]
    for st in STREAM_SETTINGS:
        default = ("required" if st.key in ("id", "url") else "unset") if st.default is None else f"`{st.default!r}`"
        lines.append(f"| `{st.key}` | {default} | {st.help} |")
    if model_kinds:
        lines += ["", "## Model kinds (`task`)", "", "| task | what |", "|---|---|"]
        lines += [f"| `{kind}` | {help} |" for kind, help in model_kinds.items()]
    if model_options:
        lines += [
            "",
            "## Model options (`options`)",
            "",
            "Serve-time options are read from settings at every start (a bad one stops start-up); "
            "build-time ones need `edge-mm build` after a change (until then the server refuses to start).",
            "",
            "| task | option | when | default | help |",
            "|---|---|---|---|---|",
        ]
        for kind, key, when, default, help in model_options:
            shown = "unset" if default is None else f"`{default!r}`"
            lines.append(f"| `{kind}` | `{key}` | {when} | {shown} | {help} |")
    return "\n".join(lines) + "\n"
