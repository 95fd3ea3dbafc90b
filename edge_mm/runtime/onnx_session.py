"""An ONNX Runtime CPU session behind the same call as a TorchScript module.

``session(*inputs)`` takes the inputs in the manifest's order (numpy arrays or CPU
tensors, anything ``np.asarray`` reads without a copy) and returns numpy: one array
for one output, else a tuple. Runners keep numpy on this path, so it never imports torch.

A lone inference gets the idle cores: each session holds a second ``InferenceSession``
with ``lone_threads`` intra-op threads, used by a run that starts while no other ONNX
Runtime inference in the process is running (one client: p50 down by a third on 2 cores,
bench/results/compare.md). Concurrent runs use ``threads`` each, as the sweep chose.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


class _Running:
    """How many ONNX Runtime inferences are running in this process now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    @contextmanager
    def one(self) -> Iterator[bool]:
        """Count one run while the block runs; yields True when no other run was going on."""
        with self._lock:
            self.count += 1
            alone = self.count == 1
        try:
            yield alone
        finally:
            with self._lock:
                self.count -= 1


RUNNING = _Running()


class OnnxSession:
    """One model on the CPU provider: sequential execution, all graph optimizations, no spinning.

    ``threads``: intra-op threads per run (the runtime's ``intra_op_threads``); several requests
    may run the session at once, each on its own calling thread. ``lone_threads`` above
    ``threads`` adds the session a lone run uses (the model's weights twice in memory).
    """

    def __init__(self, path: Path, threads: int, lone_threads: int = 0) -> None:
        self.path = path
        self.threads = max(1, threads)
        self._session = self._open(self.threads)
        self.lone_threads = lone_threads if lone_threads > self.threads else self.threads
        self._lone = self._open(self.lone_threads) if self.lone_threads > self.threads else None
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]

    def _open(self, threads: int) -> Any:
        import onnxruntime as ort  # here, so a server with no ONNX model never loads it

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle pool threads sleep instead of spinning: a server's HTTP threads need those cycles
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3  # errors only: its optimizer's notes are not ours to print
        return ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, *inputs: Any, **named: Any) -> np.ndarray | tuple[np.ndarray, ...]:
        feeds = dict(zip(self.input_names, inputs, strict=False)) | named
        if set(feeds) != set(self.input_names):
            raise TypeError(f"{self.path.name} takes inputs {self.input_names}, got {sorted(feeds)}")
        arrays = {k: np.ascontiguousarray(np.asarray(v)) for k, v in feeds.items()}
        with RUNNING.one() as alone:
            session = self._lone if alone and self._lone is not None else self._session
            outs = session.run(None, arrays)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def eval(self) -> OnnxSession:
        """Nothing to switch (an ONNX graph has no training mode); here so both backends read alike."""
        return self
