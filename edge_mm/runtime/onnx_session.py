"""An ONNX Runtime session behind the same call as a TorchScript module.

``session(*inputs)`` takes the inputs in the manifest's order (numpy arrays or CPU
tensors, anything ``np.asarray`` reads without a copy) and returns numpy: one array
for one output, else a tuple. Runners keep numpy on this path, so it never imports torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edge_mm.device import ORT_CPU, ort_providers
from edge_mm.runtime.solo import SOLO


class OnnxSession:
    """One ``InferenceSession``: sequential execution, all graph optimizations.

    ``threads``: intra-op threads per run (the runtime's ``intra_op_threads``); several
    requests may run the session at once, each on its own calling thread. ``solo_threads`` (more
    than ``threads``, CPU only): a second session on that many threads, for a pass that starts
    alone (runtime/solo.py); it costs a second copy of the packed weights. ``device``: the
    model's device; ``cuda`` runs on ONNX Runtime's CUDA provider where this onnxruntime has
    it (edge_mm/device.py ``ort_providers``), else on the CPU one. Inputs and outputs are
    host numpy either way.
    """

    def __init__(
        self, path: Path, threads: int, device: str = "cpu", *, arena: bool = True, solo_threads: int = 0
    ) -> None:
        # ONNX Runtime 1.32's wheels send usage events (1DS, mobile.events.data.microsoft.com) from a
        # background thread unless this is set before it loads; disable_telemetry_events() does not stop them
        os.environ["ORT_DISABLE_TELEMETRY"] = "1"  # not a default: an offline server never sends them
        import onnxruntime as ort  # here, so a server with no ONNX model never loads it

        opts = _options(ort, threads, spinning=False, arena=arena)
        self.path = path
        self.threads = opts.intra_op_num_threads
        providers, self.provider_reason = ort_providers(device, ort.get_available_providers())
        self._session = ort.InferenceSession(str(path), opts, providers=providers)
        self._solo = None
        self.solo_passes = 0
        if solo_threads > self.threads and providers[0] == ORT_CPU:
            # its pool runs one pass at a time, with the other cores idle: spinning between ops costs nothing
            solo = _options(ort, solo_threads, spinning=True, arena=arena)
            self._solo = ort.InferenceSession(str(path), solo, providers=providers)
        self.solo_threads = solo_threads if self._solo is not None else 0
        self.providers: list[str] = self._session.get_providers()  # what ONNX Runtime accepted, first serves
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]

    def __call__(self, *inputs: Any, **named: Any) -> np.ndarray | tuple[np.ndarray, ...]:
        feeds = dict(zip(self.input_names, inputs, strict=False)) | named
        if set(feeds) != set(self.input_names):
            raise TypeError(f"{self.path.name} takes inputs {self.input_names}, got {sorted(feeds)}")
        feeds = {k: np.ascontiguousarray(np.asarray(v)) for k, v in feeds.items()}
        with SOLO.forward_pass() as alone:
            if alone and self._solo is not None:
                self.solo_passes += 1
                outs = self._solo.run(None, feeds)
            else:
                outs = self._session.run(None, feeds)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def eval(self) -> OnnxSession:
        """Nothing to switch (an ONNX graph has no training mode); here so both backends read alike."""
        return self


def _options(ort: Any, threads: int, *, spinning: bool, arena: bool) -> Any:
    """Session options: ``threads`` intra-op threads, sequential execution, all graph optimizations."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # idle pool threads sleep instead of spinning (unless ``spinning``): the HTTP threads need those cycles
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.log_severity_level = 3  # errors only: its optimizer's notes are not ours to print
    if not arena:  # inputs of any size: an arena (and the shape-keyed memory plans) would keep the largest ever
        opts.enable_cpu_mem_arena = False
        opts.enable_mem_pattern = False
    return opts
