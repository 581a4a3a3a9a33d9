"""Judge diagnostics for the run report: spend, failures, agreement, position bias, and which
Elo link (Bradley–Terry or Thurstone) predicts held-out pairs better."""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.stats import kendalltau

from zelo_ray.core.elo import EloConvergenceWarning, fit, win_probability
from zelo_ray.core.ensemble import clamp_votes
from zelo_ray.annotate.qrels import qrels_grades
from zelo_ray.judges.keys import uniforms

__all__ = ["spend", "spend_of_store", "merge_failures", "failures", "agreement", "position_bias", "heldout_models", "decisive_by_grade",
           "calibration_effect"]


def spend(all_votes: pa.Table, judge_names: list[str]) -> dict:
    """Per judge: calls written (every attempt row ever stored), tokens, cost, latency."""
    out = {}
    for name in judge_names:
        t = all_votes.filter(pc.equal(all_votes["judge"], name))
        lat = t["latency_s"].drop_null().to_numpy(zero_copy_only=False) if t.num_rows else np.empty(0)
        out[name] = {
            "calls": t.num_rows,
            "http_attempts": int(pc.sum(t["attempts"]).as_py() or 0),
            "input_tokens": int(pc.sum(t["input_tokens"]).as_py() or 0),
            "output_tokens": int(pc.sum(t["output_tokens"]).as_py() or 0),
            "cost": round(float(pc.sum(t["cost"]).as_py() or 0.0), 6),
            "latency_p50_s": round(float(np.median(lat)), 4) if len(lat) else None,
        }
    return out


def spend_of_store(store, judge_names: list[str], *, latency_sample: int = 1_000_000) -> dict:
    """:func:`spend` over every row of a vote store, read one partition at a time so that the
    whole store is never in memory; the latency median is over the first ``latency_sample`` rows
    of each judge."""
    cols = ["judge", "attempts", "input_tokens", "output_tokens", "cost", "latency_s"]
    sums = {n: {"calls": 0, "http_attempts": 0, "input_tokens": 0, "output_tokens": 0, "cost": 0.0}
            for n in judge_names}
    lat: dict[str, list] = {n: [] for n in judge_names}
    for p in range(store.partitions):
        t = store.read_all(cols, partitions=[p])
        for name, s in spend(t, judge_names).items():
            for k in sums[name]:
                sums[name][k] += s[k]
            if sum(len(x) for x in lat[name]) < latency_sample:
                sel = t.filter(pc.equal(t["judge"], name))["latency_s"].drop_null().to_numpy(zero_copy_only=False)
                lat[name].append(sel)
    out = {}
    for name in judge_names:
        values = np.concatenate(lat[name])[:latency_sample] if lat[name] else np.empty(0)
        out[name] = {**sums[name], "cost": round(sums[name]["cost"], 6),
                     "latency_p50_s": round(float(np.median(values)), 4) if len(values) else None}
    return out


def merge_failures(a: dict, b: dict) -> dict:
    """:func:`failures` of two sets of calls together."""
    out = {}
    for name in dict.fromkeys([*a, *b]):
        x = a.get(name, {"calls": 0, "missing": 0, "errors": {}})
        y = b.get(name, {"calls": 0, "missing": 0, "errors": {}})
        calls, missing = x["calls"] + y["calls"], x["missing"] + y["missing"]
        errors = dict(x["errors"])
        for k, v in y["errors"].items():
            errors[k] = errors.get(k, 0) + v
        out[name] = {"calls": calls, "missing": missing,
                     "missing_fraction": round(missing / calls, 4) if calls else None,
                     "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1]))}
    return out


def _category(error: str) -> str:
    """A short class of an error message: 'HTTP 429', 'timeout', 'unparseable: empty reply'…"""
    if error.startswith("unparseable reply: "):
        detail = error[len("unparseable reply: "):]
        for cls in ("empty reply", "no score", "outside [-1, 1]", "not a number"):
            if cls in detail:
                return f"unparseable: {cls}"
        return "unparseable"
    for cls in ("timeout", "connection error", "malformed response"):
        if error.startswith(cls):
            return cls
    return error.split(":", 1)[0][:40]


def failures(ts: pa.Table, judge_names: list[str]) -> dict:
    """Per judge: share of calls without a score, and their errors by category."""
    out = {}
    for name in judge_names:
        t = ts.filter(pc.equal(ts["judge"], name))
        missing = t.filter(pc.is_null(t["score"]))
        errors: dict[str, int] = {}
        for e in missing["error"].to_pylist():
            cat = "not asked yet" if e is None else _category(e)
            errors[cat] = errors.get(cat, 0) + 1
        out[name] = {"calls": t.num_rows, "missing": missing.num_rows,
                     "missing_fraction": round(missing.num_rows / t.num_rows, 4) if t.num_rows else None,
                     "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1]))}
    return out


def agreement(votes: np.ndarray, judge_names: list[str]) -> dict:
    """For each pair of judges: share of pairs both answered where their clamped votes agree,
    and Cohen's κ over the three classes."""
    c = clamp_votes(votes)
    out = {}
    for a in range(len(judge_names)):
        for b in range(a + 1, len(judge_names)):
            both = ~np.isnan(c[:, a]) & ~np.isnan(c[:, b])
            x, y = c[both, a], c[both, b]
            if not len(x):
                continue
            po = float(np.mean(x == y))
            pe = sum(float(np.mean(x == v) * np.mean(y == v)) for v in (-1.0, 0.0, 1.0))
            kappa = (po - pe) / (1 - pe) if pe < 1 else 1.0
            out[f"{judge_names[a]}~{judge_names[b]}"] = {"pairs": int(both.sum()),
                                                          "agreement": round(po, 4), "kappa": round(kappa, 4)}
    return out


def position_bias(ts: pa.Table, judge_names: list[str]) -> dict:
    """Per judge: among decisive answers, the share won by the document shown first (0.5 =
    no bias); and on probe pairs (asked in both orders), how often the clamped vote changes."""
    out = {}
    for name in judge_names:
        t = ts.filter(pc.and_(pc.equal(ts["judge"], name), pc.is_valid(ts["score"])))
        score = t["score"].to_numpy(zero_copy_only=False).astype(float)
        swapped = t["swapped"].to_numpy(zero_copy_only=False)
        shown = np.where(swapped, -score, score)  # back to the order the judge saw
        first, second = shown < -0.5, shown > 0.5
        decisive = int(first.sum() + second.sum())
        entry = {"decisive": decisive,
                 "first_shown_wins": round(float(first.sum() / decisive), 4) if decisive else None}
        probe = t["probe"].to_numpy(zero_copy_only=False)
        if probe.any():
            pid = t["pair_id"].to_numpy()
            base = dict(zip(pid[~probe].tolist(), clamp_votes(score[~probe]).tolist()))
            flips = [base[p] != v for p, v in zip(pid[probe].tolist(), clamp_votes(score[probe]).tolist())
                     if p in base]
            entry.update(probe_pairs=len(flips), flip_rate=round(float(np.mean(flips)), 4) if flips else None)
        out[name] = entry
    return out


def heldout_models(ia: np.ndarray, ib: np.ndarray, w: np.ndarray, pair_id: np.ndarray, group: np.ndarray,
                   n: int, *, fraction: float, prior: float) -> dict:
    """Fit both links on all but ``fraction`` of the pairs (chosen by hashing the pair id) and
    compare the mean log-likelihood of the held-out soft outcomes."""
    held = uniforms(pair_id, 91) < fraction
    if not held.any() or held.all():
        return {"heldout_pairs": int(held.sum()), "skipped": "not enough pairs"}
    out = {"heldout_pairs": int(held.sum())}
    for model in ("bradley_terry", "thurstone"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EloConvergenceWarning)
            res = fit(ia[~held], ib[~held], w[~held], n, group=group, model=model, prior=prior, stderr=False)
        p = np.clip(win_probability(res.scores[ia[held]] - res.scores[ib[held]], model), 1e-12, 1 - 1e-12)
        ll = w[held] * np.log(p) + (1 - w[held]) * np.log1p(-p)
        out[model] = round(float(ll.mean()), 5)
    out["better"] = max(("bradley_terry", "thurstone"), key=lambda m: out[m])
    return out


def decisive_by_grade(votes: pa.Table, pairs: pa.Table, grade) -> dict:
    """Share of decisive votes (|clamped score| = 1) and of votes for the better-graded document,
    per (lower grade, higher grade) pair of qrels grades, over within-query votes. ``grade(query_ids,
    doc_ids)`` returns qrels grades (0 where unjudged). A diagnostic of judges against labels:
    equal grades should mostly tie, distant grades should be decided for the better document."""
    within = votes.filter(pc.equal(votes["kind"], "within"))
    within = within.filter(pc.is_valid(within["score"]))
    if within.num_rows == 0:
        return {}
    idx = pc.index_in(within["pair_id"], value_set=pairs["pair_id"]).to_numpy(zero_copy_only=False)
    p = pairs.take(pa.array(idx))
    ga = grade(p["query_id"], p["doc_a"])
    gb = grade(p["query_id"], p["doc_b"])
    s = clamp_votes(within["score"].to_numpy(zero_copy_only=False))
    # s < 0: A judged better; "right" means the better-graded side won (equal grades: a tie)
    right = np.where(ga > gb, s < 0, np.where(ga < gb, s > 0, s == 0))
    lo, hi = np.minimum(ga, gb), np.maximum(ga, gb)
    out = {}
    for a, b in sorted(set(zip(lo.tolist(), hi.tolist()))):
        m = (lo == a) & (hi == b)
        out[f"{a:g}-{b:g}"] = {"votes": int(m.sum()), "decisive": round(float((s[m] != 0).mean()), 4),
                               "agree_with_grades": round(float(right[m].mean()), 4)}
    return out


def calibration_effect(table: pa.Table, qrels: pa.Table | None, seed: int) -> dict:
    """How much cross-query calibration moved the scores: rank correlation with the raw Elo, the
    share of cross-query pairs it reorders, and (with qrels) agreement with the graded gain."""
    elo = table["elo"].to_numpy(zero_copy_only=False)
    cal = table["calibrated"].to_numpy(zero_copy_only=False)
    qid = np.asarray(table["query_id"].to_pylist(), dtype=object)
    ok = np.isfinite(elo) & np.isfinite(cal)
    out = {}
    if ok.sum() < 3:
        return out
    out["kendall_tau_raw_vs_calibrated"] = round(float(kendalltau(elo[ok], cal[ok]).statistic), 4)
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(ok)
    a, b = rng.choice(idx, 200_000), rng.choice(idx, 200_000)
    cross = qid[a] != qid[b]
    if cross.any():
        flip = np.sign(elo[a] - elo[b]) != np.sign(cal[a] - cal[b])
        out["cross_query_pairs_reordered"] = round(float(flip[cross].mean()), 4)
    if qrels is not None:
        gain = qrels_grades(qrels)(table["query_id"], table["doc_id"])
        out["kendall_tau_vs_qrels_gain_pooled"] = {
            "raw_elo": round(float(kendalltau(elo[ok], gain[ok]).statistic), 4),
            "calibrated": round(float(kendalltau(cal[ok], gain[ok]).statistic), 4)}
    return out
