"""The inference backends a model folder can run on, and what each one needs.

* ``torch`` — the model in PyTorch (fp32 on CPU, bf16 on CUDA): every model kind, the reference.
* ``onnx`` — the same weights exported to ONNX and run by ONNX Runtime; scores equal PyTorch's
  to 1e-4 (tested). On a CPU it mostly saves the per-call overhead of small batches.
* ``onnx-int8`` — that graph with its matrix weights quantised to int8 (dynamic quantisation:
  activations are quantised per call): about 2× faster on a CPU than fp32, at a measured
  ranking-quality cost (docs/benchmarks.md). A CPU backend; on a GPU use ``torch`` or ``onnx``.

Encoders only (cross-encoders and embedding models): a causal "yes"-logit reranker runs on
``torch``.

    >>> check_backend("onnx-int8", "cross_encoder", where="serve.backend")
    'onnx-int8'
    >>> check_backend("onnx", "decoder_yes", where="serve.backend")
    Traceback (most recent call last):
    ...
    ValueError: serve.backend=onnx runs encoders (cross_encoder, bi_encoder); this decoder_yes model needs serve.backend=torch
"""

from __future__ import annotations

from typing import get_args

from zelo_ray.config.base import Backend

__all__ = ["BACKENDS", "Backend", "check_backend", "is_onnx"]

BACKENDS: tuple[str, ...] = get_args(Backend)
ONNX_KINDS = ("cross_encoder", "bi_encoder")


def is_onnx(backend: str) -> bool:
    return backend in ("onnx", "onnx-int8")


def check_backend(backend: str, kind: str, *, where: str) -> str:
    """``backend`` if it can run a model of ``kind``, else a ValueError naming the setting."""
    if backend not in BACKENDS:
        raise ValueError(f"{where}={backend!r}: expected one of {', '.join(BACKENDS)}")
    if is_onnx(backend) and kind not in ONNX_KINDS:
        raise ValueError(f"{where}={backend} runs encoders ({', '.join(ONNX_KINDS)}); this {kind} model "
                         f"needs {where}=torch")
    return backend
