"""`zelo slm`: the pairwise-SLM loop of zELO's Stage 2 — a few ensemble votes teach a small
pairwise model, which judges the bulk.

1. **Teacher pass**: the ensemble judges ``annotate.slm.teacher_share`` of each query's pairs
   (:mod:`zelo_ray.annotate.teacher` picks them from the pair ids) and every cross-query pair;
   its Elo is kept as the *ensemble-only* result at this budget (``<annotate>/slm/teacher/``).
2. **Distil**: the ensemble's soft outcome on those pairs trains the pairwise SLM
   (:func:`zelo_ray.train.pairwise.train_pairwise`, both orders); held-out queries measure its
   agreement with the ensemble, log-loss and position bias before and after.
3. **Bulk pass**: the distilled folder becomes the ``annotate.slm.judge`` judge (vLLM through
   ``ray.data.llm``) and judges the other pairs; Elo is fitted over the union. Each vote keeps its
   judge and model in the vote store; ``pair_outcomes.parquet`` says per pair which side judged it.

The bulk pass runs only once the held-out measurement shows the SLM agreeing with the ensemble
(:func:`distillation_concern`; ``annotate.slm.require_agreement``): an SLM that learned nothing
would only add noise, so the loop stops with the ensemble-only Elo as the result.

Every pass is resumable: votes are stored as they arrive and reused, and the distilled model is
reused while the teacher outcomes and the distillation settings are unchanged
(``<workdir>/pairwise-slm/loop-<key>``). The report
(``<annotate>/slm/report.json``) adds the Kendall τ per query between the ensemble-only Elo and
the mixed Elo at the same ensemble budget, and the judge calls and spend the SLM saved.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from zelo_ray.config import ZeloConfig
from zelo_ray.layout import layout
from zelo_ray.reuse import saved_if_unchanged
from zelo_ray.scoring.kinds import CARD

__all__ = ["distillation_concern", "elo_tau", "elo_tau_files", "run_slm_loop", "served_docs", "teacher_pairs"]

_KEPT = ("zelo.parquet", "pair_outcomes.parquet", "report.json")


def elo_tau(a: pa.Table, b: pa.Table) -> pa.Table:
    """Kendall τ-b per query between two Elo tables (``query_id, doc_id, elo``) over their shared
    documents; null where a query has fewer than two shared documents or a constant ranking."""
    from scipy.stats import kendalltau

    j = a.select(["query_id", "doc_id", "elo"]).join(
        b.select(["query_id", "doc_id", "elo"]).rename_columns(["query_id", "doc_id", "elo_b"]),
        keys=["query_id", "doc_id"]).sort_by([("query_id", "ascending")])
    qids = j["query_id"].to_numpy(zero_copy_only=False)
    x, y = j["elo"].to_numpy(zero_copy_only=False), j["elo_b"].to_numpy(zero_copy_only=False)
    out_q, out_t, out_n = [], [], []
    starts = np.flatnonzero(np.r_[True, qids[1:] != qids[:-1]]) if len(qids) else np.empty(0, int)
    for s, e in zip(starts, np.r_[starts[1:], len(qids)]):
        tau = kendalltau(x[s:e], y[s:e]).statistic if e - s >= 2 else float("nan")
        out_q.append(qids[s])
        out_t.append(None if tau is None or not np.isfinite(tau) else float(tau))
        out_n.append(int(e - s))
    return pa.table({"query_id": pa.array(out_q, pa.string()), "tau": pa.array(out_t, pa.float64()),
                     "documents": pa.array(out_n, pa.int64())})


def elo_tau_files(a: Path, b: Path) -> pa.Table:
    """:func:`elo_tau` of two ``zelo.parquet`` files, one row group at a time when they are laid
    out alike (each query in one row group, the same queries in the same row group of both — as
    two fits over the same bucket plan write them), so memory holds one bucket, not two tables of
    millions of rows (at 112k queries the whole-table join peaked at 5.5 GiB). Otherwise both
    are read whole."""
    cols = ["query_id", "doc_id", "elo"]
    fa, fb = pq.ParquetFile(a), pq.ParquetFile(b)
    if fa.metadata.num_row_groups == fb.metadata.num_row_groups:
        parts, seen = [], set()
        for i in range(fa.metadata.num_row_groups):
            ta, tb = fa.read_row_group(i, columns=cols), fb.read_row_group(i, columns=cols)
            qa = set(pc.unique(ta["query_id"]).to_pylist())
            if qa != set(pc.unique(tb["query_id"]).to_pylist()) or not seen.isdisjoint(qa):
                break
            seen |= qa
            parts.append(elo_tau(ta, tb))
        else:
            return pa.concat_tables(parts) if parts else elo_tau(fa.schema_arrow.empty_table().select(cols),
                                                                 fb.schema_arrow.empty_table().select(cols))
    return elo_tau(pq.read_table(a, columns=cols), pq.read_table(b, columns=cols))


def _distil_key(cfg: ZeloConfig, teacher: Path) -> str:
    s = cfg.annotate.slm
    h = hashlib.blake2b(digest_size=16)
    with teacher.open("rb") as f:  # in blocks: at the paper's size the file is hundreds of MB
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    h.update(json.dumps(s.model_dump(exclude={"judge", "device", "require_agreement"}), sort_keys=True).encode())
    judge = next((j for j in cfg.annotate.judges if j.name == s.judge), None)
    h.update(f"docs as served, cut to {getattr(judge, 'max_doc_chars', None)}".encode())
    return h.hexdigest()


_TEACHER_COLUMNS = ["query_id", "pair_id", "doc_a", "doc_b", "p_a", "source"]


def _teacher_batches(path: Path):
    """The ensemble's decided pairs of a ``pair_outcomes.parquet``, batch by batch."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536, columns=_TEACHER_COLUMNS):
        yield batch.filter(pc.and_(pc.is_valid(batch["p_a"]), pc.equal(batch["source"], "ensemble")))


def teacher_pairs(path: Path, max_pairs: int | None, seed: int) -> pa.Table:
    """The pairs distillation learns from: the ensemble's decided pairs, or a seeded sample of
    ``max_pairs`` of them. Two streaming passes (count, then take), so memory holds the sample and
    one batch — not the millions of teacher pairs of a paper-sized run."""
    if not max_pairs:  # everything: one pass
        return pa.Table.from_batches(list(_teacher_batches(path)), schema=_teacher_schema(path))
    total = sum(b.num_rows for b in _teacher_batches(path))
    if total <= max_pairs:
        return pa.Table.from_batches(list(_teacher_batches(path)), schema=_teacher_schema(path))
    want = np.sort(np.random.default_rng(seed).choice(total, size=max_pairs, replace=False))
    parts, start = [], 0
    for b in _teacher_batches(path):
        lo, hi = np.searchsorted(want, [start, start + b.num_rows])
        if hi > lo:
            parts.append(b.take(pa.array(want[lo:hi] - start)))
        start += b.num_rows
    return pa.Table.from_batches(parts, schema=_teacher_schema(path))


def _teacher_schema(path: Path) -> pa.Schema:
    schema = pq.read_schema(path)
    return pa.schema([schema.field(c) for c in _TEACHER_COLUMNS])


def served_docs(col, doc_ids: list[str], max_doc_chars: int | None) -> dict[str, str]:
    """The documents as an SLM judge reads them when it serves (title line, cut to
    ``max_doc_chars``; None: whole), so that distillation and judging see the same prompts."""
    from zelo_ray.judges.caller import shown_doc
    from zelo_ray.judges.vllm_pairwise import cut_document

    t = pq.read_table(col.corpus_path, columns=["doc_id", "title", "text"],
                      filters=[("doc_id", "in", sorted(set(doc_ids)))])
    shown = (shown_doc(ti, tx) for ti, tx in zip(t["title"].to_pylist(), t["text"].to_pylist()))
    return dict(zip(t["doc_id"].to_pylist(), (cut_document(x, max_doc_chars) if max_doc_chars else x for x in shown)))


def _judge_docs(cfg: ZeloConfig, col, doc_ids: list[str]) -> dict[str, str]:
    """:func:`served_docs` with the loop's SLM judge's ``max_doc_chars``."""
    judge = next(j for j in cfg.annotate.judges if j.name == cfg.annotate.slm.judge)
    return served_docs(col, doc_ids, getattr(judge, "max_doc_chars", None))


def _distil(cfg: ZeloConfig, teacher: Path, log_fn) -> dict:
    """Train the SLM on the teacher pairs, or reuse the folder a run with the same inputs made.
    Each distillation gets its own folder (named by its inputs): the vote store keys votes by the
    model's path, so a re-distilled model never inherits the votes of an earlier one."""
    from zelo_ray.data import open_collection
    from zelo_ray.data.texts import query_texts
    from zelo_ray.train.pairwise import pair_rows, train_pairwise

    s = cfg.annotate.slm
    key = _distil_key(cfg, teacher)
    model_dir = layout(cfg).pairwise / f"loop-{key[:12]}"
    card = saved_if_unchanged(model_dir / CARD, key, field="loop_key")
    if card is not None:
        log_fn(f"      reusing the distilled SLM in {model_dir} (same teacher outcomes and settings)")
        return {**card, "model": str(model_dir), "reused": True}
    t = teacher_pairs(teacher, s.max_pairs, cfg.annotate.seed)
    if t.num_rows == 0:
        raise ValueError(f"{teacher}: the ensemble decided no teacher pair; raise annotate.slm.teacher_share")
    col = open_collection(layout(cfg).data)
    rows = pair_rows(t, query_texts(col), _judge_docs(cfg, col, t["doc_a"].to_pylist() + t["doc_b"].to_pylist()))
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if s.device == "auto" else s.device
    tmp = model_dir.with_name(model_dir.name + ".tmp")
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)
    result = train_pairwise(rows, base=s.base, out=str(tmp), heldout=s.heldout, epochs=s.epochs,
                            batch_size=s.batch_size, lr=s.lr, max_length=s.max_length, seed=cfg.annotate.seed,
                            log=lambda m: log_fn(f"      {m}"), device=device)
    card = json.loads((tmp / "zelo_card.json").read_text())
    card["loop_key"] = key
    (tmp / "zelo_card.json").write_text(json.dumps(card, indent=2, default=str))
    shutil.rmtree(model_dir, ignore_errors=True)
    tmp.rename(model_dir)  # a kill mid-training leaves no folder that looks finished
    return {**result, "model": str(model_dir), "reused": False}


def _check_base(base: str) -> None:
    from zelo_ray.judges.vllm_pairwise import answer_token_ids
    from zelo_ray.scoring.kinds import resolve_base

    try:
        path = resolve_base(base)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"annotate.slm.base={base!r}: {e} (e.g. models/smollm2-135m-instruct, which "
                                "scripts/setup-vllm.sh makes)") from e
    try:
        answer_token_ids(path)
    except ValueError as e:
        raise ValueError(f"annotate.slm.base={base!r}: {e}") from e


def distillation_concern(before: dict | None, after: dict | None, alpha: float = 0.05) -> str | None:
    """Why the distilled SLM should not be trusted as a judge, from its held-out measurements
    (None when they show it agreeing with the ensemble): it was not measured (no decided held-out
    pair), it agrees no better than chance or than the base did, its verdicts follow the position,
    or the held-out pairs are too few to tell its agreement from chance (one-sided binomial test at
    ``alpha``).

    >>> distillation_concern({"agreement": 0.6}, {"agreement": 0.4, "first_shown_share": 0.0, "decided": 5})
    'the distilled SLM did not learn the ensemble (held-out agreement 0.600 → 0.400 on 5 decided pairs; the first-shown document wins 0% of the time)'
    >>> distillation_concern({"agreement": 0.5}, {"agreement": 0.8, "first_shown_share": 0.5, "decided": 40}) is None
    True
    >>> distillation_concern(None, None)[:60]
    "the distilled SLM's agreement with the ensemble was not meas"
    >>> distillation_concern({"agreement": 0.5}, {"agreement": 0.8, "first_shown_share": 0.5, "decided": 5})
    'too few decided held-out pairs to tell whether the distilled SLM learned the ensemble (agreement 0.800 on 5 pairs, p = 0.19 against chance)'
    """
    if not after or after.get("agreement") is None or not after.get("decided"):
        return ("the distilled SLM's agreement with the ensemble was not measured (no decided pair among the "
                "held-out teacher queries; raise annotate.slm.heldout)")
    a0 = (before or {}).get("agreement")
    bias = after.get("first_shown_share")
    stuck = bias is not None and not 0.1 <= bias <= 0.9
    if after["agreement"] <= max(0.5, a0 if a0 is not None else 0.0) or stuck:
        return (f"the distilled SLM did not learn the ensemble (held-out agreement "
                f"{a0 if a0 is not None else float('nan'):.3f} → {after['agreement']:.3f} on {after['decided']} decided "
                f"pairs; the first-shown document wins {bias:.0%} of the time)")
    from scipy.stats import binomtest

    n = int(after["decided"])
    p = binomtest(int(round(after["agreement"] * n)), n, 0.5, alternative="greater").pvalue
    if p > alpha:
        return (f"too few decided held-out pairs to tell whether the distilled SLM learned the ensemble "
                f"(agreement {after['agreement']:.3f} on {n} pairs, p = {p:.2g} against chance)")
    return None


def _spend_per_call(report: dict, names: list[str]) -> dict:
    """Average tokens and cost of one ensemble call in the teacher pass (what each saved call
    would have cost)."""
    calls = tokens = cost = 0.0
    for n in names:
        sp = ((report.get("judges") or {}).get(n) or {}).get("spend") or {}
        calls += sp.get("calls", 0) or 0
        tokens += (sp.get("input_tokens", 0) or 0) + (sp.get("output_tokens", 0) or 0)
        cost += sp.get("cost", 0) or 0
    if not calls:
        return {"tokens": None, "cost": None}
    return {"tokens": tokens / calls, "cost": cost / calls}


def run_slm_loop(cfg: ZeloConfig, *, log_fn=print, qrels: pa.Table | None = None,
                 queries: list[str] | None = None) -> dict:
    """Teacher pass → distil → bulk pass → report (see the module docstring); ``queries`` limits
    the loop to those query ids, as for :func:`~zelo_ray.annotate.run.run_annotate`."""
    from zelo_ray.annotate.run import run_annotate

    s = cfg.annotate.slm
    if s.judge is None:
        raise ValueError("annotate.slm.judge is not set: name the judge in annotate.judges that the distilled "
                         "SLM fills (kind 'vllm_pairwise'), e.g. annotate.slm.judge=slm")
    _check_base(s.base)  # before the teacher pass spends anything
    run = layout(cfg)
    out = run.annotate
    loop = run.slm
    ensemble = [j.name for j in cfg.annotate.judges if j.name != s.judge]
    log_fn(f"[slm 1/3] the ensemble ({', '.join(ensemble)}) judges {s.teacher_share:.0%} of the pairs")
    first = run_annotate(cfg, log_fn=log_fn, qrels=qrels, queries=queries, teacher_only=True)
    (loop / "teacher").mkdir(parents=True, exist_ok=True)
    for name in _KEPT:
        shutil.copy2(out / name, loop / "teacher" / name)
    teacher = loop / "teacher" / "pair_outcomes.parquet"

    log_fn(f"[slm 2/3] distilling {s.base} on the ensemble's outcomes")
    distilled = _distil(cfg, teacher, log_fn)
    concern = distillation_concern(distilled.get("heldout_before"), distilled.get("heldout"))
    advice = "raise annotate.slm.teacher_share, heldout, max_pairs or epochs, or distil a larger base"
    if concern and s.require_agreement:
        log_fn(f"[slm 3/3] skipped: {concern}. The ensemble-only Elo stands ({out / 'zelo.parquet'}); {advice} "
               "(annotate.slm.require_agreement=false judges with it anyway)")
        return _write_report(cfg, first, None, distilled, concern, ensemble)
    if concern:
        log_fn(f"      warning: {concern}; its votes may only add noise to the Elo — {advice}")

    judges = [j.model_copy(update={"model": distilled["model"]}) if j.name == s.judge and j.kind == "vllm_pairwise"
              else j for j in cfg.annotate.judges]
    cfg_bulk = cfg.model_copy(update={"annotate": cfg.annotate.model_copy(update={"judges": judges})})
    log_fn(f"[slm 3/3] the distilled SLM ({s.judge}) judges the other pairs; Elo over all of them")
    bulk = run_annotate(cfg_bulk, log_fn=log_fn, qrels=qrels, queries=queries)

    report = _write_report(cfg, first, bulk, distilled, concern, ensemble)
    h, hb = distilled.get("heldout") or {}, distilled.get("heldout_before") or {}
    tau = report["tau_ensemble_only_vs_mixed"]
    log_fn(f"      SLM agreement with the ensemble on held-out queries: {hb.get('agreement', float('nan')):.3f} → "
           f"{h.get('agreement', float('nan')):.3f}; τ(ensemble-only, mixed) mean "
           f"{tau['mean'] if tau['mean'] is not None else float('nan'):.3f} over {tau['queries']} queries; "
           f"{report['saving']['ensemble_calls_saved']:,} ensemble calls saved")
    return report


def _write_report(cfg: ZeloConfig, first: dict, bulk: dict | None, distilled: dict, concern: str | None,
                  ensemble: list[str]) -> dict:
    """``<annotate>/slm/report.json`` (and ``elo_tau.parquet`` when the SLM judged); ``bulk`` is
    None when the loop stopped after distillation (``require_agreement``)."""
    s = cfg.annotate.slm
    run = layout(cfg)
    out = run.annotate
    loop = run.slm
    by_source = {src: {"pairs": 0, "with_outcome": 0} for src in ("ensemble", "slm")}
    for b in pq.ParquetFile(out / "pair_outcomes.parquet").iter_batches(batch_size=262_144, columns=["p_a", "source"]):
        decided = pc.is_valid(b["p_a"])
        for src, n in by_source.items():
            mine = pc.equal(b["source"], src)
            n["pairs"] += int(pc.sum(mine).as_py() or 0)
            n["with_outcome"] += int(pc.sum(pc.and_(mine, decided)).as_py() or 0)
    tau = {"queries": 0, "mean": None, "median": None, "file": None}
    if bulk is not None:
        taus = elo_tau_files(loop / "teacher" / "zelo.parquet", out / "zelo.parquet")
        pq.write_table(taus, loop / "elo_tau.parquet")
        tv = taus["tau"].drop_null().to_numpy()
        tau = {"queries": int(len(tv)), "mean": float(tv.mean()) if len(tv) else None,
               "median": float(np.median(tv)) if len(tv) else None, "file": str(loop / "elo_tau.parquet")}
    else:
        (loop / "elo_tau.parquet").unlink(missing_ok=True)  # from an earlier, ungated run: not this result
    per_call = _spend_per_call(first, ensemble)
    saved = by_source["slm"]["pairs"] * len(ensemble) if bulk is not None else 0  # gated: nobody judged them
    report = {
        "label": (bulk or first).get("label"), "teacher_share": s.teacher_share, "judge": s.judge,
        "ensemble": ensemble, "pairs": by_source, "slm_judged": bulk is not None,
        "distillation": {k: distilled.get(k) for k in ("model", "reused", "steps", "train_pairs", "heldout_queries",
                                                         "wall_s", "heldout_before", "heldout")},
        "distillation_concern": concern,
        "tau_ensemble_only_vs_mixed": tau,
        "saving": {"ensemble_calls_saved": saved, "slm_calls": by_source["slm"]["pairs"],
                   "tokens_saved": round(saved * per_call["tokens"]) if per_call["tokens"] else None,
                   "cost_saved": round(saved * per_call["cost"], 4) if per_call["cost"] else None},
        "teacher_pass": {k: first.get(k) for k in ("judge_calls", "asked_this_run", "reused", "missing_votes")},
        "bulk_pass": {k: bulk.get(k) for k in ("judge_calls", "asked_this_run", "reused", "missing_votes")}
        if bulk is not None else None,
        "files": {"teacher": str(loop / "teacher"), "zelo": str(out / "zelo.parquet"),
                  "pair_outcomes": str(out / "pair_outcomes.parquet"), "model": distilled["model"]},
    }
    (loop / "report.json").write_text(json.dumps(report, indent=2, default=str))
    return report
