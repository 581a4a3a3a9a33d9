"""Rerank request payloads of a given size, as in the paper's latency table (12 KB and 150 KB of
documents): ``n`` documents of about ``doc_bytes`` UTF-8 bytes each, cut from real corpus text.
No Ray, no I/O: the GPU check and the Serve benchmark build the same requests."""

from __future__ import annotations

import numpy as np

__all__ = ["make_docs", "payload", "percentiles"]


def make_docs(texts: list[str], n: int, doc_bytes: int, seed: int = 0) -> list[str]:
    """``n`` documents of ~``doc_bytes`` bytes: random corpus texts joined until long enough."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        parts, size = [], 0
        while size < doc_bytes:
            t = texts[int(rng.integers(len(texts)))]
            parts.append(t)
            size += len(t.encode()) + 1
        out.append(" ".join(parts).encode()[:doc_bytes].decode(errors="ignore"))
    return out


def payload(texts: list[str], kb: int, *, doc_bytes: int = 1000, seed: int = 0) -> tuple[str, list[str]]:
    """(query, documents) with ``kb`` KB of documents in ``doc_bytes``-byte documents."""
    docs = make_docs(texts, max(1, kb * 1000 // doc_bytes), doc_bytes, seed)
    query = " ".join(texts[seed % len(texts)].split()[:8])
    return query, docs


def percentiles(seconds: list[float]) -> dict:
    a = np.asarray(seconds) * 1000
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 2),
            "p90_ms": round(float(np.percentile(a, 90)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "mean_ms": round(float(a.mean()), 2)}
