"""An ONNX Runtime session over one exported head, fed with token arrays.

    >>> from zelo_ray.runtime.export import exported                     # doctest: +SKIP
    >>> s = OnnxSession(exported(folder, head="logit"), threads=2)      # doctest: +SKIP
    >>> s.run({"input_ids": ids, "attention_mask": mask}).shape          # doctest: +SKIP
    (8,)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["OnnxSession"]


class OnnxSession:
    """``run(arrays) → the head's output``; arrays the graph does not take are not fed (an
    encoder without token types ignores them), int64 as the exporter wrote the inputs."""

    def __init__(self, path: str | Path, *, threads: int = 0, device: str = "cpu",
                 providers: list[str] | None = None):
        """``providers``: ONNX Runtime execution providers in order of preference (e.g.
        TensorRT then CUDA on a GPU); by default CPU, or CUDA then CPU for ``device="cuda"``."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or os.cpu_count() or 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # warnings about unused initialisers are not the user's
        if providers:
            missing = set(providers) - set(ort.get_available_providers())
            if missing:
                raise RuntimeError(f"ONNX Runtime here has no {', '.join(sorted(missing))}")
        else:
            providers = self._default_providers(device)
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.threads = opts.intra_op_num_threads

    @staticmethod
    def _default_providers(device: str) -> list[str]:
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError("device=cuda with an ONNX backend needs onnxruntime-gpu (the "
                                   "installed onnxruntime has no CUDA execution provider)")
            providers.insert(0, "CUDAExecutionProvider")
        return providers

    def run(self, arrays: dict) -> np.ndarray:
        feed = {n: np.ascontiguousarray(np.asarray(arrays[n]), dtype=np.int64) for n in self.inputs}
        return self.session.run(None, feed)[0]
