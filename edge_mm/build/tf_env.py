"""The build-only TensorFlow environment: a venv with pinned TensorFlow (CPU) and tf2onnx, made on demand.

TensorFlow (about 600 MB installed) is needed only to convert a frozen TF graph to ONNX and to run
that graph as the build's independent reference; it is never installed in the serving environment
and never imported by edge_mm: everything runs in this venv as a subprocess. The venv is made once
per user under ``~/.cache/edge-mm/tf-env/<key>`` (``$XDG_CACHE_HOME`` is honoured; ``EDGE_MM_TF_ENV``
moves the parent folder), keyed by the pinned requirements, so changing a pin makes a new one and
every checkout and build folder on the machine shares it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_mm.build.progress import Progress
from edge_mm.errors import ConfigError

# Versions with cp311 wheels that convert the TF Object Detection API's SSD graphs at opset 13
# (tf2onnx 1.16.1 pins protobuf 3.20; numpy 2 breaks TF 2.15).
REQUIREMENTS = (
    "tensorflow-cpu==2.15.1",
    "tf2onnx==1.16.1",
    "onnx==1.16.2",
    "protobuf==3.20.3",
    "numpy==1.26.4",
)
DONE = ".installed"  # written last: a venv without it is incomplete and made again

# Runs in the TF env: a frozen graph on .npy images -> .npz of the named outputs, image by image.
REFERENCE_SCRIPT = """\
import sys
import numpy as np
import tensorflow as tf

pb, out, inp, names, *images = sys.argv[1:]
names = names.split(",")
graph_def = tf.compat.v1.GraphDef()
with open(pb, "rb") as f:
    graph_def.ParseFromString(f.read())
graph = tf.Graph()
with graph.as_default():
    tf.import_graph_def(graph_def, name="")
results = {}
with tf.compat.v1.Session(graph=graph) as sess:
    for i, path in enumerate(images):
        got = sess.run(names, {inp: np.load(path)})
        for name, value in zip(names, got):
            results[f"{i}/{name}"] = value
np.savez(out, **results)
print(f"ran {len(images)} images through TensorFlow {tf.__version__}")
"""


def env_key(requirements: Sequence[str] = REQUIREMENTS) -> str:
    """The venv's folder name: its Python's version and a hash of its pinned requirements."""
    digest = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:12]
    return f"py{sys.version_info.major}{sys.version_info.minor}-{digest}"


def env_root() -> Path:
    """Where the build-only envs live: EDGE_MM_TF_ENV, else the user's cache folder (not the working folder)."""
    if os.environ.get("EDGE_MM_TF_ENV"):
        return Path(os.environ["EDGE_MM_TF_ENV"]).resolve()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return (cache / "edge-mm" / "tf-env").resolve()


def env_python(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run_logged(cmd: Sequence[str], progress: Progress, what: str, keep: int = 40, show: str = "") -> None:
    """Run ``cmd``, passing its output lines that contain ``show`` to ``progress`` ("" passes all);
    ConfigError with its last ``keep`` lines when it fails."""
    tail: deque[str] = deque(maxlen=keep)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail.append(line)
            if line and show in line:
                progress(f"  {line[-200:]}")
    if proc.returncode != 0:
        raise ConfigError(f"{what} failed (exit {proc.returncode}):\n" + "\n".join(tail))


def ensure_env(progress: Progress, requirements: Sequence[str] = REQUIREMENTS, root: Path | None = None) -> Path:
    """The TF env's python, making the venv first if it is not there (a few minutes, about 1.3 GB)."""
    folder = (root or env_root()) / env_key(requirements)
    if (folder / DONE).is_file():
        return env_python(folder)
    progress(f"making the build-only TensorFlow env {folder} ({', '.join(requirements)}); once, a few minutes")
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{folder.name}.", dir=folder.parent))
    try:
        run_logged([sys.executable, "-m", "venv", str(work)], progress, "python -m venv")
        pip = [str(env_python(work)), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
        try:
            run_logged([*pip, *requirements], progress, "pip install", show="Successfully installed")
        except ConfigError as exc:
            raise ConfigError(
                f"could not install the build-only TensorFlow env ({' '.join(requirements)}) with pip: it needs "
                f"a package index (or pip's cache) with those wheels for Python "
                f"{sys.version_info.major}.{sys.version_info.minor}. {exc}"
            ) from None
        (work / DONE).write_text("\n".join(requirements) + "\n")
        if folder.exists():  # a half-made one from an interrupted build
            shutil.rmtree(folder)
        work.rename(folder)  # run as bin/python -m ...: the scripts' shebangs still name the temporary path
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return env_python(folder)


def convert_graphdef(
    python: Path, graph: Path, onnx_out: Path, inputs: Sequence[str], outputs: Sequence[str], opset: int,
    progress: Progress,
) -> None:  # fmt: skip
    """``python -m tf2onnx.convert --graphdef`` in the TF env (a few minutes for a 70 MB graph)."""
    progress(f"converting {graph.name} to ONNX (tf2onnx, opset {opset}); a few minutes")
    cmd = [str(python), "-m", "tf2onnx.convert", "--graphdef", str(graph), "--output", str(onnx_out)]
    cmd += ["--inputs", ",".join(inputs), "--outputs", ",".join(outputs), "--opset", str(opset)]
    run_logged(cmd, progress, "tf2onnx.convert", show="Successfully converted")
    if not onnx_out.is_file():
        raise ConfigError(f"tf2onnx.convert wrote no {onnx_out}")


def run_frozen_graph(
    python: Path, graph: Path, input_name: str, output_names: Sequence[str], images: Sequence[object],
    progress: Progress,
) -> list[dict[str, object]]:  # fmt: skip
    """Each image (a numpy array fed as ``input_name``) through ``graph`` in TensorFlow itself: one dict of
    the named outputs per image."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="edge-mm-tf-") as tmp:
        folder = Path(tmp)
        paths = []
        for i, image in enumerate(images):
            paths.append(folder / f"{i}.npy")
            np.save(paths[-1], np.asarray(image))
        script, out = folder / "reference.py", folder / "out.npz"
        script.write_text(REFERENCE_SCRIPT)
        cmd = [str(python), str(script), str(graph), str(out), input_name, ",".join(output_names)]
        run_logged([*cmd, *map(str, paths)], progress, "the TensorFlow reference run", show="ran ")
        with np.load(out) as got:
            return [{n: got[f"{i}/{n}"] for n in output_names} for i in range(len(paths))]


def conversion_cache(*inputs: str) -> Path | None:
    """The folder that keeps one conversion's outputs (the ONNX graph, TensorFlow's reference outputs),
    keyed by the pinned requirements and ``inputs`` (hashes of the graph and photos, the opset), beside
    the envs; so a second artifacts folder (lite, tests, a bundle) does not convert the same graph again.
    None when ``EDGE_MM_TF_CACHE=0`` (every build converts and runs TensorFlow)."""
    if os.environ.get("EDGE_MM_TF_CACHE", "1") in ("", "0"):
        return None
    digest = hashlib.sha256("\n".join([*REQUIREMENTS, *inputs]).encode()).hexdigest()[:16]
    return env_root().parent / "tf-conversions" / digest


def keep_conversion(cache: Path, files: dict[str, Path], outputs: Sequence[dict[str, object]]) -> None:
    """Store ``files`` (name -> path) and the reference ``outputs`` (one dict of arrays per image) in
    ``cache``, whole or not at all (written beside it, then renamed; DONE marks it complete)."""
    import numpy as np

    cache.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{cache.name}.", dir=cache.parent))
    try:
        for name, path in files.items():
            shutil.copyfile(path, work / name)
        arrays: dict[str, Any] = {f"{i}/{k}": v for i, out in enumerate(outputs) for k, v in out.items()}
        np.savez(work / "reference.npz", **arrays)
        (work / DONE).write_text("\n".join(REQUIREMENTS) + "\n")
        if cache.exists():
            shutil.rmtree(cache)
        work.rename(cache)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def cached_outputs(cache: Path, count: int, output_names: Sequence[str]) -> list[dict[str, object]]:
    """The reference outputs :func:`keep_conversion` stored, in :func:`run_frozen_graph`'s form."""
    import numpy as np

    with np.load(cache / "reference.npz") as got:
        return [{n: got[f"{i}/{n}"] for n in output_names} for i in range(count)]
