"""ONNX graphs of a model folder, exported once and cached beside it.

Two heads, both over ``input_ids``, ``attention_mask`` (and ``token_type_ids`` where the
tokenizer makes them), batch and sequence length dynamic:

* ``logit`` — a one-logit sequence-classification model (a cross-encoder): ``logits (batch,)``.
* ``embedding`` — an encoder's pooled, L2-normalised vectors ``(batch, dim)``: mean pooling over
  the real tokens (or the first token, when the folder's sentence-transformers pooling says CLS),
  as sentence-transformers and :meth:`~zelo_ray.scoring.models.Reranker.embed` compute them.

The files live in ``<folder>/onnx/`` (or, for a folder this process cannot write, in
``$XDG_CACHE_HOME/zelo-ray/onnx/<key>/``) with a manifest holding a fingerprint of the weights
and of the exporter: a retrained checkpoint, or another torch or ONNX Runtime, exports again; a
second process asking at the same time waits on a file lock instead of exporting twice. int8 is
ONNX Runtime's dynamic quantisation of the fp32 graph's matrix weights.

Example::

    >>> import tempfile
    >>> from zelo_ray.scoring.models import tiny_encoder      # doctest: +SKIP
    >>> path = exported(tiny_encoder(tempfile.mkdtemp()), head="logit", int8=True)  # doctest: +SKIP
    >>> path.name                                              # doctest: +SKIP
    'logit-int8.onnx'
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Literal

__all__ = ["EXPORT_DIR", "Head", "exported", "input_names", "pooling_of"]

log = logging.getLogger(__name__)

Head = Literal["logit", "embedding"]
EXPORT_DIR = "onnx"
_MANIFEST = "manifest.json"
# bump when the graphs change meaning (inputs, outputs, pooling): caches made before re-export
_FORMAT = 4
_WEIGHTS = ("config.json", "model.safetensors", "pytorch_model.bin", "1_Pooling/config.json", "modules.json")


def input_names(folder: str | Path) -> list[str]:
    """The token arrays the folder's tokenizer makes (and its graph takes), in feed order."""
    from transformers import AutoTokenizer

    names = AutoTokenizer.from_pretrained(str(folder)).model_input_names
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in names]


def pooling_of(folder: str | Path) -> str:
    """'mean' or 'cls': how the folder's sentence-transformers config pools (mean without one,
    as zelo-ray's bi-encoders do); another pooling is a ValueError naming the file."""
    cfg = Path(folder) / "1_Pooling" / "config.json"
    if not cfg.exists():
        return "mean"
    modes = {k.removeprefix("pooling_mode_").removesuffix("_token").removesuffix("_tokens")
             for k, v in json.loads(cfg.read_text()).items() if k.startswith("pooling_mode_") and v}
    if modes in ({"mean"}, {"cls"}):
        return modes.pop()
    raise ValueError(f"{cfg}: pooling {sorted(modes)} is not exported to ONNX (mean or cls only); "
                     "use the torch backend for this model")


def exported(folder: str | Path, *, head: Head, int8: bool = False) -> Path:
    """The ONNX file of ``folder``'s ``head`` (fp32, or int8), exporting it first if needed."""
    folder = Path(folder)
    key = _key(folder, head)
    where = _cache_dir(folder, key)
    name = f"{head}-int8.onnx" if int8 else f"{head}.onnx"
    with _locked(where / ".lock"):
        manifest = _read_manifest(where)
        if manifest.get("key") != key:
            manifest = {"key": key, "source": str(folder), "files": {}}
        if name in manifest["files"] and (where / name).exists():
            return where / name
        fp32 = where / f"{head}.onnx"
        if f"{head}.onnx" not in manifest["files"] or not fp32.exists():
            _export(folder, head, fp32)
            manifest["files"][fp32.name] = "fp32"
        if int8:
            _quantize(fp32, where / name)
            manifest["files"][name] = "int8 (dynamic, per-channel weights, 7-bit range)"
        _write_json(where / _MANIFEST, manifest)
    return where / name


def _key(folder: Path, head: str) -> str:
    """Weights and config digests, the head and the exporter's versions."""
    from importlib.metadata import version

    # versions from the package metadata: reading a cached export must not import torch
    digest = hashlib.sha256(f"{_FORMAT}|{head}|{version('torch')}|{version('onnxruntime')}".encode())
    for rel in _WEIGHTS:
        p = folder / rel
        if p.exists():
            digest.update(rel.encode())
            with p.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    digest.update(block)
    return digest.hexdigest()[:20]


def _cache_dir(folder: Path, key: str) -> Path:
    """``<folder>/onnx`` when writable, else a per-user cache keyed by the fingerprint."""
    beside = folder / EXPORT_DIR
    with contextlib.suppress(OSError):
        beside.mkdir(exist_ok=True)
        if os.access(beside, os.W_OK):
            return beside
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zelo-ray" / "onnx" / key
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def _locked(path: Path):
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_manifest(where: Path) -> dict:
    try:
        return json.loads((where / _MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


def _export(folder: Path, head: str, out: Path) -> None:
    """torch.onnx (the dynamo exporter) of the head over a padded two-row example."""
    import torch

    from zelo_ray.runtime.heads import head_module

    names = input_names(folder)
    module = head_module(folder, head, pooling_of(folder) if head == "embedding" else "mean").eval()
    example = _example()
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    log.info("exporting %s (%s) to ONNX at %s", folder, head, out)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _quiet_exporter()
        path = Path(tmp) / out.name
        torch.onnx.export(module, tuple(example[n] for n in names), str(path), input_names=names,
                          output_names=[f"zelo_{head}"], dynamo=True, external_data=False, verbose=False,
                          dynamic_shapes=tuple({0: batch, 1: seq} for _ in names))
        path.replace(out)


def _quiet_exporter() -> None:
    # the exporter logs a line per skipped torchvision op and prints its phases; the log file has them
    for name in ("torch.onnx", "torch.onnx._internal.exporter._registration", "torch.export"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _example() -> dict:
    """Two rows, one padded: the graph must keep the mask's effect (batch and length are dynamic)."""
    import torch

    ids = torch.tensor([[101, 2054, 2003, 102, 2009, 2003, 1037, 3231, 102, 0, 0, 0],
                        [101, 7592, 102, 2023, 2003, 2178, 2028, 2007, 2062, 2616, 2182, 102]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "token_type_ids": torch.zeros_like(ids)}


def _quantize(fp32: Path, out: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    # the quantiser logs "consider pre-processing" on the root logger at every call: advice for
    # static quantisation of convolutions, not for dynamic int8 of a transformer's matrices
    root.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            path = Path(tmp) / out.name
            # per-channel scales with a 7-bit weight range: on Cranfield's dense index per-tensor
            # int8 cost -0.012 nDCG@10 [-0.023, -0.001], this -0.004 [-0.012, +0.003], at the same
            # speed (docs/benchmarks.md §10)
            quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, per_channel=True,
                             reduce_range=True, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            path.replace(out)
    finally:
        root.setLevel(level)
