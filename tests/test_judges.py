"""Judge building blocks: parser, keys, limits, simulated judge, caller, store, calibration."""

import asyncio
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.special import expit, ndtr

from zelo_ray.core.calibration import fit_offsets, targets
from zelo_ray.annotate.diagnostics import agreement
from zelo_ray.config import ConfigError, OpenAIJudgeConfig, SimulatedJudgeConfig, load_config
from zelo_ray.judges.caller import VOTE_SCHEMA, JudgeCaller
from zelo_ray.judges.keys import combine, swap_bits, text_hashes, uniforms
from zelo_ray.judges.limits import Bucket, EndpointLimiter
from zelo_ray.retry import backoff_delay
from zelo_ray.judges.parse import ScoreParseError, parse_score
from zelo_ray.judges.parts import write_part
from zelo_ray.judges.store import VoteStore


@pytest.mark.parametrize("text,score", [
    ('{"reasoning": "B is on topic", "score": 0.8}', 0.8),
    ('Sure!\n```json\n{"reasoning": "x", "score": -1}\n```', -1.0),
    ("A covers it.\n<score>+.3</score>", 0.3),
    ("<score>0.1</score> then <score>-0.5</score>", -0.5),
    ("<score>1</score>", 1.0),
    ("thinking...\nScore: -0.25", -0.25),
    ('{"score": "0.5"}', 0.5),
])
def test_parse_score_accepts(text, score):
    assert parse_score(text) == pytest.approx(score)


@pytest.mark.parametrize("text,message", [
    ("", "empty"), (None, "empty"), ("   ", "empty"),
    ("I think A is better.", "no score"),
    ('{"score": 1.7}', "outside"), ("<score>-2</score>", "outside"),
    ('{"score": "high"}', "not a number"), ('{"score": null}', "not a number"),
    ('{"score": NaN}', "outside"),
])
def test_parse_score_rejects(text, message):
    with pytest.raises(ScoreParseError, match=message):
        parse_score(text)


def test_keys_deterministic_and_order_sensitive():
    h = text_hashes(["q", "a", "b"])
    assert combine(h[0], h[1], h[2]) == combine(h[0], h[1], h[2])
    assert combine(h[0], h[1], h[2]) != combine(h[0], h[2], h[1])
    pid = np.arange(20_000, dtype=np.int64)
    s1, s2 = swap_bits(7, pid, "gpt"), swap_bits(7, pid, "gpt")
    assert (s1 == s2).all() and 0.48 < s1.mean() < 0.52
    assert (s1 != swap_bits(7, pid, "gemini")).mean() > 0.4   # judges get independent orders
    assert (s1 != swap_bits(8, pid, "gpt")).mean() > 0.4      # and so do run seeds
    u = uniforms(pid, 3)
    assert 0 < u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.01


def test_backoff_delay_bounds():
    for attempt in range(8):
        lo = backoff_delay(attempt, base=0.5, cap=8.0, u=0.0)
        hi = backoff_delay(attempt, base=0.5, cap=8.0, u=0.999999)
        full = min(8.0, 0.5 * 2 ** attempt)
        assert lo == pytest.approx(full / 2) and hi == pytest.approx(full, rel=1e-5)
    assert backoff_delay(0, base=0.5, cap=8.0, u=0.0, retry_after=5.0) == 5.0   # Retry-After wins
    assert backoff_delay(0, base=0.5, cap=1.0, u=0.0, retry_after=1e6) == 10.0  # but is capped


def test_bucket_enforces_rate():
    async def go():
        b = Bucket(per_minute=1200)  # 20/s, burst 10 (half a second)
        t0 = time.monotonic()
        for _ in range(60):
            await b.take(1)
        return time.monotonic() - t0
    elapsed = asyncio.run(go())
    assert 2.3 <= elapsed < 3.5   # 10 from the burst, 50 more at 20/s


def test_limiter_caps_concurrency():
    async def go():
        lim = EndpointLimiter(max_concurrency=3)
        inflight = peak = 0

        async def one():
            nonlocal inflight, peak
            async with lim.slot():
                inflight += 1
                peak = max(peak, inflight)
                await asyncio.sleep(0.01)
                inflight -= 1
        await asyncio.gather(*(one() for _ in range(20)))
        return peak
    assert asyncio.run(go()) == 3


def test_limit_book_holds_every_limit_across_callers():
    """Many callers on one book: the concurrency cap holds for all of them together, the request
    rate is the endpoint's (not per caller), and a 429's pause stops every caller."""
    from zelo_ray.judges.shared_limits import EndpointLimits, LimitBook

    async def go():
        book = LimitBook({"ep": EndpointLimits(max_concurrency=3, requests_per_minute=1200)})
        inflight = peak = 0

        async def one(client):
            nonlocal inflight, peak
            slot = await book.acquire("ep", 0.0, client)
            inflight += 1
            peak = max(peak, inflight)
            await asyncio.sleep(0.01)
            inflight -= 1
            await book.release("ep", slot)
        t0 = time.monotonic()
        await asyncio.gather(*(one(f"caller-{i % 8}") for i in range(60)))
        elapsed = time.monotonic() - t0
        await book.pause("ep", 0.3)
        t1 = time.monotonic()
        await book.release("ep", await book.acquire("ep", 0.0, "caller-9"))
        return peak, elapsed, time.monotonic() - t1, book.clients(), book.stats()["ep"]
    peak, elapsed, paused, clients, stats = asyncio.run(go())
    assert peak == 3 and clients == 9
    assert 2.3 <= elapsed < 3.5            # 60 requests at 20/s with a 10-request burst, for all 8 callers
    assert paused >= 0.29
    assert stats["granted"] == 61 and stats["in_use"] == 0


def test_limit_book_takes_back_the_slots_of_a_dead_caller():
    from zelo_ray.judges.shared_limits import EndpointLimits, LimitBook

    async def go():
        book = LimitBook({"ep": EndpointLimits(max_concurrency=2, lease_s=0.2)})
        await book.acquire("ep", 0.0, "dies")
        await book.acquire("ep", 0.0, "dies")      # never returned
        t0 = time.monotonic()
        slot = await asyncio.wait_for(book.acquire("ep", 0.0, "lives"), timeout=5)
        waited = time.monotonic() - t0
        await book.release("ep", slot)
        with pytest.raises(KeyError, match="no limits for judge 'other'"):
            await book.acquire("other", 0.0, "lives")
        return waited, book.stats()["ep"]
    waited, stats = asyncio.run(go())
    assert 0.15 <= waited < 2.0 and stats["reclaimed"] == 2


def test_shared_limits_cover_hosted_judges_only():
    from zelo_ray.judges.shared_limits import limits_of

    hosted = OpenAIJudgeConfig(name="gpt", model="m", base_url="http://127.0.0.1:1", max_concurrency=7,
                               requests_per_minute=600, timeout_s=10)
    lim = limits_of([hosted, SimulatedJudgeConfig(name="s", kind="simulated")])
    assert list(lim) == ["gpt"] and lim["gpt"].max_concurrency == 7 and lim["gpt"].requests_per_minute == 600
    assert lim["gpt"].lease_s == 50.0


def _tasks(n, swapped, rel_a, rel_b, judge="sim"):
    return pa.table({
        "pair_id": np.arange(n, dtype=np.int64), "kind": ["within"] * n, "probe": [False] * n,
        "query_id": ["q"] * n, "query_b": pa.nulls(n, pa.string()), "doc_a": ["a"] * n, "doc_b": ["b"] * n,
        "judge": [judge] * n, "swapped": swapped, "cache_key": np.arange(n, dtype=np.int64) * 7919,
        "rel_a": rel_a, "rel_b": rel_b})


def test_caller_restores_the_sign_of_swapped_calls():
    cfg = SimulatedJudgeConfig(name="sim", kind="simulated", noise_sd=0.0, uniform_mix=0.0)
    caller = JudgeCaller([cfg])
    try:
        n = 200
        swapped = np.arange(n) % 2 == 0
        votes = caller(_tasks(n, swapped, np.full(n, 3.0), np.zeros(n)))
        again = caller(_tasks(n, swapped, np.full(n, 3.0), np.zeros(n)))
    finally:
        caller.close()
    assert votes.schema == VOTE_SCHEMA
    score = votes["score"].to_numpy()
    assert (score < -0.9).all()                      # A is better whichever order was shown
    assert votes["swapped"].to_pylist() == swapped.tolist()
    assert np.array_equal(score, again["score"].to_numpy())  # same key, same answer
    assert votes["error"].null_count == n


def test_simulated_noise_matches_the_model():
    cfg = SimulatedJudgeConfig(name="sim", kind="simulated", noise_sd=0.2, uniform_mix=0.0)
    caller = JudgeCaller([cfg])
    try:
        n = 20_000
        votes = caller(_tasks(n, np.zeros(n, bool), np.full(n, 0.5), np.zeros(n)))
    finally:
        caller.close()
    p_a = (1 - votes["score"].to_numpy()) / 2
    expected = np.mean(expit(0.5 + np.random.default_rng(0).normal(0, 0.2, 200_000)))
    assert abs(p_a.mean() - expected) < 0.005


def _vote_rows(keys, scores, errors=None):
    n = len(keys)
    row = {f.name: pa.nulls(n, f.type) for f in VOTE_SCHEMA}
    row.update(cache_key=pa.array(keys, pa.int64()), score=pa.array(scores, pa.float64()),
               judge=pa.array(["j"] * n), error=pa.array(errors or [None] * n, pa.string()),
               cost=pa.array([0.5] * n))
    return pa.table(row, schema=VOTE_SCHEMA)


def test_store_prefers_answers_and_counts_every_spend(tmp_path):
    store = VoteStore(tmp_path / "votes", flush_rows=1)
    (tmp_path / "votes" / ".tmp-part-half-written.parquet").write_bytes(b"PAR1 garbage")
    store.append(_vote_rows([1, 2], [None, -1.0], ["HTTP 500: boom (gave up after 2 retries)", None]))
    store.append(_vote_rows([1], [0.5]))        # the missing vote, asked again, answered
    store.append(_vote_rows([3], [None], ["timeout after 1s"]))
    store = VoteStore(tmp_path / "votes")        # a new run opening the same store ...
    assert list((tmp_path / "votes").glob(".tmp-*"))   # (opening alone never touches a writer's files)
    store.organize()                             # ... tidies it before its callers start
    assert not list((tmp_path / "votes").rglob(".tmp-*"))
    t = store.read().sort_by("cache_key")
    assert t["cache_key"].to_pylist() == [1, 2, 3]
    assert t["score"].to_pylist() == [0.5, -1.0, None]
    assert t["error"].to_pylist() == [None, None, "timeout after 1s"]
    assert store.answered_keys().tolist() == [1, 2]
    assert store.asked_keys().tolist() == [1, 2, 3]
    assert store.read_all().num_rows == 4 and sum(store.read_all()["cost"].to_pylist()) == 2.0


def test_store_buffers_until_flush(tmp_path):
    store = VoteStore(tmp_path / "v", flush_rows=10, flush_s=3600)
    store.append(_vote_rows([1, 2, 3], [0.0, 1.0, -1.0]))
    assert store.parts() == []
    store.flush()
    assert len(store.parts()) == 1 and store.read().num_rows == 3   # null query ids: partition 0


def test_store_partitions_by_query_and_compacts(tmp_path):
    from zelo_ray.judges.answer_log import AnswerLog

    store = VoteStore(tmp_path / "v", flush_rows=1)
    rows = _vote_rows(list(range(40)), [0.5] * 40)
    rows = rows.set_column(rows.schema.get_field_index("query_id"), "query_id",
                           pa.array([f"q{i % 8}" for i in range(40)]))
    store.append(rows.slice(0, 20))
    store.append(rows.slice(20, 10))
    log = AnswerLog(tmp_path / "v")                    # a caller's answers, not yet sealed
    log.write(rows.slice(30, 10))
    part = store.partition_of(rows["query_id"])
    q0 = int(part[0])
    assert store.answered_keys([q0]).tolist() == [k for k in range(40) if part[k] == q0]
    assert len(store.answered_keys()) == 40
    log.close()
    store.organize()                                   # the sealed log is filed into partitions
    assert not list((tmp_path / "v").glob("part-*.parquet"))
    before = len(store.parts())
    removed = store.compact(sorted(set(part.tolist())))
    assert removed > 0 and len(store.parts()) == before - removed == len(set(part.tolist()))
    assert store.read_all().num_rows == 40 and len(store.answered_keys()) == 40
    # a compaction cut short after its merged part landed: the replaced parts are not read twice
    d = store.parts([q0])[0].parent
    import json
    import shutil
    shutil.copy(store.parts([q0])[0], d / "part-00000000000000000001-old.parquet")
    merged = store.parts([q0])[-1].name
    (d / f"compact-{merged}.json").write_text(json.dumps({"into": merged,
                                                          "replaces": ["part-00000000000000000001-old.parquet"]}))
    assert store.read_all().num_rows == 40


@pytest.mark.parametrize("model,cdf", [("thurstone", ndtr), ("bradley_terry", expit)])
def test_offsets_recover_the_truth(model, cdf):
    rng = np.random.default_rng(0)
    q = 30
    truth = rng.normal(0, 1, q)
    truth -= truth.mean()
    m = 4000
    q1 = rng.integers(0, q, m)
    q2 = (q1 + rng.integers(1, q, m)) % q
    diff = rng.normal(0, 1, m)
    w = cdf(diff + truth[q1] - truth[q2])   # exact soft outcomes
    res = fit_offsets(q1, q2, diff, w, q, model=model, prior=0.0)
    assert res.converged
    np.testing.assert_allclose(res.offsets, truth, atol=1e-4)


def test_offsets_golden_cases():
    # Outcomes exactly as the within-query scores predict: nothing to correct.
    d = np.array([0.3, -1.0, 0.7])
    res = fit_offsets(np.array([0, 1, 2]), np.array([1, 2, 0]), d, ndtr(d), 3, prior=0.0)
    np.testing.assert_allclose(res.offsets, 0.0, atol=1e-6)
    # A query in no cross pair keeps offset 0; the offsets sum to zero.
    res = fit_offsets(np.array([0]), np.array([1]), np.array([0.0]), np.array([0.9]), 3, prior=0.1)
    assert res.offsets[0] > 0 > res.offsets[1] and abs(res.offsets.sum()) < 1e-9
    with pytest.raises(ValueError, match="itself"):
        fit_offsets(np.array([1]), np.array([1]), np.array([0.0]), np.array([0.5]), 2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        fit_offsets(np.array([0]), np.array([5]), np.array([0.0]), np.array([0.5]), 2)


def test_targets_squash_around_the_median():
    t = targets(np.array([-3.0, -1.0, 0.5, 2.0, 9.0]), temperature=1.0)
    assert t[2] == pytest.approx(0.5) and np.all(np.diff(t) > 0) and t.min() > 0 and t.max() < 1
    assert t[3] == pytest.approx(expit(1.5))


def test_agreement_golden():
    v = np.array([[-1.0, -0.9, 1.0], [1.0, 0.8, -1.0], [0.0, 0.1, 0.0], [-1.0, np.nan, 1.0]])
    out = agreement(v, ["a", "b", "c"])
    assert out["a~b"] == {"pairs": 3, "agreement": 1.0, "kappa": 1.0}
    assert out["a~c"]["agreement"] == 0.25 and out["a~c"]["pairs"] == 4


def test_judge_config_rejects_keys_and_duplicates(tmp_path):
    with pytest.raises(ValueError, match="NAME of an environment variable"):
        OpenAIJudgeConfig(name="x", api_key_env="sk-proj-abc123-def")
    f = tmp_path / "c.yaml"
    f.write_text("annotate:\n  judges:\n    - {name: a, model: m}\n    - {name: a, model: n}\n")
    with pytest.raises(ConfigError, match="used twice"):
        load_config(f)


def test_caller_pool_is_sized_from_the_endpoint_limits():
    from zelo_ray.annotate.sizing import caller_count, endpoint_rate

    def judge(name, conc, rpm=None):
        return OpenAIJudgeConfig(name=name, model="m", base_url="http://127.0.0.1:1", max_concurrency=conc,
                                 requests_per_minute=rpm)

    assert endpoint_rate(judge("a", 100), latency_s=2.0) == 50.0          # concurrency-bound
    assert endpoint_rate(judge("a", 10_000, rpm=6000)) == 100.0           # RPM-bound
    assert caller_count([SimulatedJudgeConfig(name="s", kind="simulated")]) == 1
    assert caller_count([judge("a", 64)]) == 1
    # three big endpoints: 3 × 500 calls/s → 10 callers of 150/s; capped
    big = [judge(n, 4096, rpm=30_000) for n in "abc"]
    assert caller_count(big) == 10 and caller_count(big, cap=4) == 4


def test_vllm_engine_pool_autoscales_between_min_and_max():
    from zelo_ray.config import VLLMPairwiseJudgeConfig
    from zelo_ray.judges.vllm_pairwise import engine_pool

    j = VLLMPairwiseJudgeConfig(name="slm", kind="vllm_pairwise", model="/m", replicas=8)
    assert engine_pool(j) == 8
    assert engine_pool(j.model_copy(update={"min_replicas": 1})) == (1, 8)


def test_store_moves_a_damaged_part_aside_and_reads_its_votes_as_unasked(tmp_path):
    """An unfiled part cut short (a crashed copy) and a filed part with a bad page: both are
    moved aside with a note, nothing raises, and their keys read as never asked."""
    store = VoteStore(tmp_path / "votes", flush_rows=1)
    store.append(_vote_rows([1, 2], [0.5, -0.5]))
    store.append(_vote_rows([3], [1.0]))
    filed = store.parts()
    loose = write_part(store.path, _vote_rows([4, 5], [0.0, 0.25]), "part-9-loose.parquet")
    loose.write_bytes(loose.read_bytes()[:100])
    data = filed[0].read_bytes()
    col = pq.read_metadata(filed[0]).row_group(0).column(VOTE_SCHEMA.names.index("cache_key"))
    start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
    i = start + col.total_compressed_size - 3                        # inside the last page's values
    filed[0].write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
    kept = set(pq.read_table(filed[1])["cache_key"].to_pylist())
    fresh = VoteStore(tmp_path / "votes")
    assert [n["part"] for n in fresh.check()] == ["part-9-loose.parquet"]      # the footer check
    assert set(fresh.asked_keys().tolist()) == kept                            # the page check on read
    notes = fresh.quarantined()
    assert len(notes) == 2 and {n["part"] for n in notes} == {"part-9-loose.parquet",
                                                            str(filed[0].relative_to(store.path))}
    assert all(Path(n["moved_to"]).exists() and "quarantine" in n["moved_to"] for n in notes)
    assert fresh.organize() == 0 and set(fresh.answered_keys().tolist()) == kept
