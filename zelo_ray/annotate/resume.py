"""When a re-run has nothing to do: the stage's outputs are a function of its inputs (candidates,
queries, config, prompts, qrels, texts) and of the vote store. The report records a fingerprint
of both; a re-run whose fingerprint matches, with nothing left to ask, returns that report
instead of recomputing pairs, calls and Elo for every query."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from zelo_ray.config import ZeloConfig
from zelo_ray.judges.store import VoteStore

__all__ = ["fingerprint", "input_fingerprint", "unchanged"]


_FORMAT = "annotate-buckets-v1"


def input_fingerprint(cfg: ZeloConfig, run, out: Path, *, teacher_only: bool = False) -> str:
    """What the stage's outputs are a function of, apart from the vote store."""
    import hashlib

    from zelo_ray.judges.factory import prompt_version

    acfg = cfg.annotate
    cand = Path(run.candidates)
    files = sorted(cand.rglob("*")) if cand.is_dir() else [cand]
    refine = out / "refine_pairs.parquet"
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps({
        "format": _FORMAT, **({"teacher_only": True} if teacher_only else {}),
        "candidates": [(str(f.relative_to(cand.parent)), f.stat().st_size, f.stat().st_mtime_ns)
                       for f in files if f.is_file()],
        "queries": run.queries, "annotate": acfg.model_dump(exclude={"output", "executor", "callers", "caller_cpus",
                                                                      "batch_size", "batches_in_flight", "flush_rows",
                                                                      "flush_s", "answer_log",
                                                                      # the loop off: as before the loop existed
                                                                      *(() if acfg.slm.judge else ("slm",))}),
        "graph": cfg.graph.model_dump(), "elo": cfg.elo.model_dump(), "data_split": cfg.data.split,
        "prompts": [prompt_version(j) for j in acfg.judges],
        # a pairwise model's probability is not clamped: runs with such judges refit once
        **({"unclamped": [j.name for j in acfg.judges if j.kind == "vllm_pairwise"]}
           if acfg.clamp and any(j.kind == "vllm_pairwise" for j in acfg.judges) else {}),
        "refine": [refine.stat().st_size, refine.stat().st_mtime_ns] if refine.exists() else None,
        # LLM judges read the texts: a changed collection means new questions
        "texts": [(str(p), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in (Path(run.collection.corpus_path), Path(run.collection.queries_path))]
        if run.reads_texts else None,
    }, sort_keys=True, default=str).encode())
    if run.qrels is not None:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, run.qrels.schema) as w:
            w.write_table(run.qrels.combine_chunks())  # the same rows give the same bytes however chunked
        h.update(sink.getvalue().to_pybytes())
    return h.hexdigest()


def fingerprint(inputs: str, store: VoteStore) -> str:
    """The inputs' fingerprint and the vote store's files as they are now."""
    import hashlib

    state = sorted((str(f.relative_to(store.path)), f.stat().st_size)
                   for f in store.path.rglob("*") if f.is_file() and not f.name.startswith(".tmp-"))
    return hashlib.blake2b(json.dumps([inputs, state]).encode(), digest_size=16).hexdigest()


def unchanged(out: Path, inputs: str, store: VoteStore, retry_failed: bool) -> dict | None:
    """The last run's report when nothing it depends on changed since and nothing is left to ask
    (missing votes are asked again only with ``retry_failed``); else None."""
    report = out / "report.json"
    if not report.exists() or not all((out / f"{n}.parquet").exists()
                                      for n in ("zelo", "pairs", "cross_pairs", "pair_outcomes")):
        return None
    prev = json.loads(report.read_text())
    if prev.get("fingerprint") != fingerprint(inputs, store) or (retry_failed and prev.get("missing_votes")):
        return None
    if (prev.get("failed") or {}).get("failed"):  # calls that could not be asked are asked again
        return None
    return {**prev, "asked_this_run": 0, "reused": prev["judge_calls"], "unchanged": True,
            "failed": {**(prev.get("failed") or {}), "failed": 0}}
