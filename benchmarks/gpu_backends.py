"""GPU check of the inference backends (issue #32), on the Ray-less GPU machine.

Serving: the replica's scoring path (`ScoringEngine`) for the MiniLM cross-encoder on each
backend the machine has — torch bf16 and fp32, ONNX Runtime with the CUDA execution provider and
with TensorRT where installed (onnxruntime-gpu; the machine ships without it, and each missing one
is recorded as skipped, not failed) — over the serve-peers requests (20–100 documents of
200–2,000 tokens, cut to one 512-token pair): documents/s, p50/p99 per request, max |Δ| of the
scores against torch fp32. Dense indexing: sentence-transformers ``encode`` on the GPU vs our
embedder on each backend, documents/s.

    python -m benchmarks.gpu_backends --out $OUT/gpu_backends.json
    python -m benchmarks.gpu_backends --dry --out /tmp/gpu_backends_dry.json   # CPU, tiny shapes (a test runs it)
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from zelo_ray.bench.payloads import percentiles
from zelo_ray.serve.engine import ScoringEngine


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def requests(texts: list[str], n: int, rng) -> list[tuple[str, list[str]]]:
    """``n`` requests of 20–100 documents of roughly 200–2,000 words of corpus text."""
    out = []
    for i in range(n):
        docs = []
        for _ in range(int(rng.integers(20, 101))):
            words, want = [], int(rng.integers(200, 2001))
            while len(words) < want:
                words += texts[int(rng.integers(len(texts)))].split()
            docs.append(" ".join(words[:want]))
        out.append((" ".join(texts[i % len(texts)].split()[:8]), docs))
    return out


def serve_backend(engine: ScoringEngine, reqs, ref: list[np.ndarray] | None) -> dict:
    """Each request tokenised and scored as a replica does; the first two are warm-up."""
    for q, docs in reqs[:2]:
        engine.score(engine.encode(q, docs, max_doc_tokens=512))
    lat, scores, docs_n = [], [], 0
    t0 = time.perf_counter()
    for q, docs in reqs:
        t = time.perf_counter()
        scores.append(engine.score(engine.encode(q, docs, max_doc_tokens=512)))
        sync()
        lat.append(time.perf_counter() - t)
        docs_n += len(docs)
    wall = time.perf_counter() - t0
    out = {"docs_per_s": round(docs_n / wall, 1), **percentiles(lat)}
    if ref is not None:
        out["max_abs_delta_vs_torch_fp32"] = float(max(np.abs(a - b).max() for a, b in zip(scores, ref)))
    return out, scores


def _engines(model: str, device: str):
    """(name, loader) per backend; a loader raising names what is missing."""
    yield "torch_fp32", lambda: ScoringEngine.load(model, device=device, dtype="float32", max_batch_tokens=65536)
    if device == "cuda":
        yield "torch_bf16", lambda: ScoringEngine.load(model, device=device, dtype="bfloat16",
                                                       max_batch_tokens=65536)
    yield "onnx", lambda: ScoringEngine.load(model, device=device, backend="onnx", max_batch_tokens=65536)
    if device == "cpu":
        yield "onnx_int8", lambda: ScoringEngine.load(model, device=device, backend="onnx-int8",
                                                      max_batch_tokens=65536)
    else:
        yield "onnx_tensorrt", lambda: _tensorrt_engine(model)


def _tensorrt_engine(model: str) -> ScoringEngine:
    from zelo_ray.runtime.export import exported
    from zelo_ray.runtime.session import OnnxSession

    engine = ScoringEngine.load(model, device="cuda", backend="onnx", max_batch_tokens=65536)
    engine.model.session = OnnxSession(exported(model, head="logit"), providers=[
        "TensorrtExecutionProvider", "CUDAExecutionProvider"])
    return engine


def serving(model: str, device: str, reqs) -> dict:
    out, ref = {}, None
    for name, load in _engines(model, device):
        try:
            engine = load()
        except (RuntimeError, ImportError, ValueError) as exc:
            out[name] = {"skipped": str(exc)}
            continue
        out[name], scores = serve_backend(engine, reqs, ref)
        ref = ref if ref is not None else scores
        print(name, json.dumps(out[name]), flush=True)
        del engine
    return out


def embedding(texts: list[str], device: str, n: int) -> dict:
    from sentence_transformers import SentenceTransformer

    from zelo_ray.retrieval.embedder import Embedder, resolve_model

    docs = (texts * (n // max(1, len(texts)) + 1))[:n]
    out = {}
    st = SentenceTransformer(resolve_model("default"), device=device)
    st.encode(docs[:64])
    t = time.perf_counter()
    st.encode(docs, batch_size=256)
    sync()
    out["sentence_transformers"] = round(n / (time.perf_counter() - t), 1)
    for backend in ("torch", "onnx"):
        try:
            emb = Embedder(backend=backend, device=device, batch_size=256)
        except (RuntimeError, ImportError) as exc:
            out[backend] = {"skipped": str(exc)}
            continue
        emb.encode(docs[:64])
        t = time.perf_counter()
        emb.encode(docs)
        sync()
        out[backend] = round(n / (time.perf_counter() - t), 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="cross-encoder folder (default: MiniLM with a fresh head)")
    ap.add_argument("--texts", default="runs/gpu/texts.json",
                    help="JSON list of corpus texts (made on the CPU machine as for gpu_serve: the GPU "
                    "machine has no datasets)")
    ap.add_argument("--requests", type=int, default=24)
    ap.add_argument("--embed-docs", type=int, default=20000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dry", action="store_true", help="CPU, tiny model and shapes: runs the script end to end")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    if args.dry:
        import tempfile

        from zelo_ray.scoring.models import load_reranker, save_reranker, tiny_encoder

        tmp = Path(tempfile.mkdtemp(prefix="gpu-backends-dry-"))
        args.model = str(save_reranker(load_reranker(tiny_encoder(tmp / "base")), tmp / "model", {}))
        texts = [f"document {i} about lift and drag on a wing at angle {i % 17}" for i in range(200)]
        args.requests, args.embed_docs = 3, 64
    else:
        texts = json.loads(Path(args.texts).read_text())
        if not args.model:
            from zelo_ray.scoring.models import load_reranker, save_reranker

            args.model = str(save_reranker(load_reranker("default", "cross_encoder"), "/tmp/gpu-backends-model", {}))
    device = "cpu" if args.dry or not torch.cuda.is_available() else "cuda"
    out = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
           "dry_run": args.dry, "requests": "20-100 documents of 200-2,000 words, cut to 512-token pairs"}
    reqs = requests(texts, args.requests, rng)
    out["serving"] = serving(args.model, device, reqs)
    Path(args.out).write_text(json.dumps(out, indent=2))
    out["dense_indexing_docs_per_s"] = embedding(texts, device, args.embed_docs)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
