"""Rerank a run's test queries with checkpoints and evaluate every system on them (what
`zelo demo`, `zelo evaluate --reranker` and `zelo bench rerank` report): the first stage, each
checkpoint's served function and its model alone, the tuned query tower as a retriever, and
paired bootstrap CIs of the differences asked for."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from zelo_ray.config import ZeloConfig
from zelo_ray.faults import ErrorLog, FaultInjector, check_failures
from zelo_ray.layout import layout
from zelo_ray.reuse import fingerprint, saved_if_unchanged
from zelo_ray.scoring.vectors import scoring_model

__all__ = ["evaluate_reranker"]


def evaluate_reranker(cfg: ZeloConfig, col, queries: list[str], checkpoints: dict[str, str], *, log=print,
                      out: Path | None = None, model_only: dict[str, str] | None = None,
                      paired: list[tuple[str, str]] = (), embedder: dict[str, str] | None = None) -> dict:
    """BM25, dense, hybrid and each checkpoint's reranking of the hybrid top-``rerank.depth``, on
    ``queries``, with paired bootstrap CIs and deltas against hybrid.

    A fused checkpoint also gets a row of its model alone, ``<name>_model_only`` unless
    ``model_only`` names it (a name there also asks for the row when the checkpoint has no
    fusion). ``paired``: (a, b) rows whose nDCG@10 difference gets its own paired CI in
    ``report["paired"]["a-b"]``. ``embedder``: checkpoint name → suffix of ``dense_<suffix>`` and
    ``hybrid_<suffix>`` rows, first-stage retrieval with that checkpoint's trained query tower
    (query-tower checkpoints only: the index's vectors are its document tower's)."""
    from zelo_ray.eval.evaluate import evaluate_runs, rankings_from_candidates
    from zelo_ray.scoring.fusion import fusion_weight
    from zelo_ray.scoring.rerank import rankings_from_reranked

    qrels = col.qrels(cfg.data.split)
    runs = rankings_from_candidates(layout(cfg).candidates, queries, cfg.evaluate.depth)
    failures, failed = {}, set()
    for name, ckpt in checkpoints.items():
        t, failures[name], lost = _rerank_one(cfg, col, queries, name, ckpt, out, log)
        failed |= lost
        runs[name] = {q: d[:cfg.evaluate.depth] for q, d in rankings_from_reranked(t).items()}
        if fusion_weight(ckpt) > 0 or name in (model_only or {}):
            # the served function fuses BM25; this row is what the model alone contributes
            runs[(model_only or {}).get(name, f"{name}_model_only")] = {
                q: d[:cfg.evaluate.depth] for q, d in rankings_from_reranked(t, by="model_score").items()}
    for name, suffix in (embedder or {}).items():
        runs.update(_embedder_runs(cfg, col, checkpoints[name], queries, runs["bm25"], suffix, log))
    # a query a reranker could not score is left out of every system, so the comparison stays paired
    kept = [q for q in queries if q not in failed]
    e = cfg.evaluate
    report = evaluate_runs(qrels, runs, kept, n_boot=e.bootstrap, confidence=e.confidence, seed=e.seed,
                           versus="hybrid", per_query=True)
    report["failed"] = failures
    report["paired"] = _paired_deltas(cfg, qrels, runs, kept, paired)
    return report


def _rerank_one(cfg: ZeloConfig, col, queries: list[str], name: str, ckpt: str, out: Path | None, log):
    """One checkpoint's reranking of ``queries`` (what an earlier run reranked with the same key
    is reused; the result is saved under ``out``): (the table, its failure summary, the ids of
    the queries it could not score)."""
    from zelo_ray.scoring.rerank import rerank_candidates
    from zelo_ray.scoring.scorer import ScorerPool

    errors = ErrorLog((out or layout(cfg).train) / f"reranked-{name}.errors.parquet", "rerank")
    errors.reset()
    saved = (out / f"reranked-{name}.parquet") if out else None
    key = _rerank_key(cfg, ckpt)
    reused = _reusable_rerank(saved, key, queries)
    todo = [q for q in queries if q not in set(reused["query_id"].to_pylist())] if reused is not None else queries
    log(f"      rerank the top-{cfg.rerank.depth} of {len(todo)} queries with {name} ({ckpt})"
        + (f" on {cfg.rerank.backend}" if cfg.rerank.backend != "torch" else "")
        + (f"; {len(queries) - len(todo)} reranked by an earlier run are reused" if reused is not None else ""))
    local = bool(todo) and cfg.rerank.executor != "ray"
    t = rerank_candidates(col, layout(cfg).candidates, ckpt, todo, depth=cfg.rerank.depth,
                          batch_size=cfg.rerank.batch_size, max_length=cfg.rerank.max_length, log=log,
                          backend=cfg.rerank.backend,
                          errors=errors, injector=FaultInjector("rerank", cfg.errors.inject),
                          pool=ScorerPool(cfg) if cfg.rerank.executor == "ray" else None,
                          model=scoring_model(cfg, col, ckpt, log=log) if local else None)
    if reused is not None:
        t = pa.concat_tables([reused, t])
    if saved is not None:
        _save_rerank(t, saved, key)
    table = errors.finish()
    summary = check_failures(table, len(queries), cfg.errors.max_fraction, stage="rerank", path=errors.path,
                             what="test queries")
    if table.num_rows:
        log(f"      {table.num_rows:,} test queries could not be reranked by {name} and are left out of "
            f"every system's metrics (listed in {errors.path}): {summary['most_common']}")
    return t, summary, set(table["record_id"].to_pylist())


def _paired_deltas(cfg: ZeloConfig, qrels, runs: dict, queries: list[str], pairs) -> dict:
    """``{"a-b": nDCG@10 difference with its paired bootstrap CI}`` for the pairs whose rows exist."""
    from zelo_ray.eval.evaluate import evaluate_runs

    e, out = cfg.evaluate, {}
    for a, b in pairs:
        if a in runs and b in runs:
            d = evaluate_runs(qrels, {a: runs[a], b: runs[b]}, queries, n_boot=e.bootstrap, confidence=e.confidence,
                              seed=e.seed, versus=b)
            out[f"{a}-{b}"] = d[a][f"delta_vs_{b}"]["ndcg@10"]
    return out


def _embedder_runs(cfg: ZeloConfig, col, ckpt: str, queries: list[str], bm25: dict, suffix: str, log) -> dict:
    """``dense_<suffix>`` / ``hybrid_<suffix>``: the checkpoint's query tower as the retriever."""
    from zelo_ray.data.texts import query_texts
    from zelo_ray.scoring.kinds import CARD
    from zelo_ray.scoring.vectors import retrieve_with
    from zelo_ray.scoring.rerank import checkpoint_max_length

    card = Path(ckpt) / CARD
    if not card.exists() or json.loads(card.read_text()).get("towers") != "query":
        log(f"      no dense_{suffix} row: {ckpt} has no trained query tower over the index's vectors")
        return {}
    seeded: list[int] = []
    model = scoring_model(cfg, col, ckpt, log=log, seeded=seeded)
    if not seeded[0]:
        log(f"      no dense_{suffix} row: the index's vectors are not {ckpt}'s document tower's")
        return {}
    qt = query_texts(col)
    r = retrieve_with(model, layout(cfg).dense, col.corpus_path,
                      {q: qt[q] for q in queries}, bm25, depth=cfg.evaluate.depth, rrf_c=cfg.retrieve.rrf_c,
                      max_length=checkpoint_max_length(ckpt, cfg.rerank.max_length))
    log(f"      dense retrieval with the trained query tower over the index's vectors: {len(queries)} queries")
    return {f"dense_{suffix}": r["dense"], f"hybrid_{suffix}": r["hybrid"]}


def _rerank_key(cfg: ZeloConfig, checkpoint: str) -> str | None:
    """What a saved reranking depends on: the candidates (their retrieve fingerprint), the model
    (its card, written once per trained model) and the rerank settings; None when either is unknown."""
    from zelo_ray.scoring.fusion import FUSION_FILE
    from zelo_ray.scoring.kinds import CARD

    cand_state = layout(cfg).candidates / "_zelo_retrieve.json"
    card = Path(checkpoint) / CARD
    if not cand_state.exists() or not card.exists():
        return None
    fusion = Path(checkpoint) / FUSION_FILE
    return fingerprint(json.loads(cand_state.read_text()).get("fingerprint"), card.read_text(),
                       fusion.read_text() if fusion.exists() else None, cfg.rerank.depth, cfg.rerank.max_length,
                       # torch's key as it always was: a saved reranking stays reusable
                       *([cfg.rerank.backend] if cfg.rerank.backend != "torch" else []))


def _reusable_rerank(saved: Path | None, key: str | None, queries: list[str]) -> pa.Table | None:
    """The queries of ``queries`` an earlier run reranked with the same key (None: nothing reusable)."""
    if saved is None or not saved.exists() or saved_if_unchanged(saved.with_suffix(".json"), key) is None:
        return None
    t = pq.read_table(saved)
    return t.filter(pc.is_in(t["query_id"], value_set=pa.array(queries, pa.string())))


def _save_rerank(table: pa.Table, saved: Path, key: str | None) -> None:
    saved.parent.mkdir(parents=True, exist_ok=True)
    state = saved.with_suffix(".json")
    state.unlink(missing_ok=True)  # the table and its key change together, never one alone
    tmp = saved.with_name(saved.name + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(saved)
    if key is not None:
        state.write_text(json.dumps({"key": key}))
