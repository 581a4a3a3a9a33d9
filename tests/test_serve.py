"""Serving: the length-aware engine, the request service (validation, auth, shapes) without Ray,
and the Ray Serve app over HTTP on 127.0.0.1 with plain HTTP and the official cohere client."""

import asyncio
import concurrent.futures as cf
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from zelo_ray.bench.common import free_port
from zelo_ray.serve.engine import Pair, ScoringEngine, check_servable, chunk_pairs, plan_batches
from zelo_ray.serve.schemas import (CohereRerankResponse, TEIRerankResult, V1RerankResponse,
                                    ZeroEntropyRerankResponse)
from zelo_ray.serve.service import RerankService
from zelo_ray.config.serve import ServeConfig
from zelo_ray.scoring.models import load_reranker, save_reranker, tiny_decoder, tiny_encoder

ROOT = Path(__file__).resolve().parents[1]
KEY = "test-key-0123456789"
DOCS = ["the lift of a wing grows with the angle of attack", "a recipe for bread", "boundary layer flow",
        "lift and drag on an aerofoil at high speed " * 80, "", "heat transfer in a pipe"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny cross-encoder saved the way training saves it (zelo_card.json, one-logit head)."""
    base = tiny_encoder(tmp_path_factory.mktemp("base"))
    out = tmp_path_factory.mktemp("ckpt") / "model"
    save_reranker(load_reranker(base), out, {"note": "test"})
    return str(out)


@pytest.fixture(scope="module")
def engine(checkpoint):
    return ScoringEngine.load(checkpoint, device="cpu", max_batch_tokens=512, max_batch_rows=4)


# -- engine ------------------------------------------------------------------------------------

def test_plan_batches_bounds_padded_tokens_and_covers_every_pair(rng):
    lengths = rng.integers(1, 300, 500).tolist()
    groups = plan_batches(lengths, 1024, 16)
    assert sorted(i for g in groups for i in g) == list(range(500))
    for g in groups:
        assert len(g) <= 16 and len(g) * max(lengths[i] for i in g) <= 1024
    # longest first: padding stays small because neighbours have similar lengths
    assert lengths[groups[0][0]] == max(lengths)


def test_chunk_pairs_split_by_tokens_never_inside_a_pair():
    pairs = [Pair(tuple(range(n))) for n in (5, 5, 5, 12, 1)]
    chunks = chunk_pairs(pairs, 10)
    assert [[p.n_tokens for p in c] for c in chunks] == [[5, 5], [5], [12], [1]]


def test_engine_truncates_documents_to_the_token_budget(engine):
    pairs = engine.encode("lift", DOCS, max_doc_tokens=16)
    q = len(engine.tok("lift", add_special_tokens=False)["input_ids"])
    assert all(p.n_tokens <= q + 16 + 3 for p in pairs)
    assert pairs[3].n_tokens == q + 16 + 3            # the long document is cut exactly at the budget
    long = engine.encode("lift", [DOCS[3]], max_doc_tokens=10_000)[0]
    assert long.n_tokens == engine.max_length         # …and never beyond the model's limit


def test_engine_scores_equal_direct_model_scoring(engine, checkpoint):
    model = load_reranker(checkpoint)
    docs = [d for d in DOCS if len(d) < 100]
    direct = model.score(["lift of a wing"] * len(docs), docs, max_length=512).numpy()
    # batches of ≤ 4 rows, mixed lengths: the order of the pairs inside batches must not matter
    got = engine.score(engine.encode("lift of a wing", docs, max_doc_tokens=512))
    np.testing.assert_allclose(got, direct, atol=1e-5)
    assert ((got >= 0) & (got <= 1)).all()


def test_engine_serves_a_yes_logit_decoder_keeping_the_question(tmp_path):
    path = tiny_decoder(tmp_path / "dec")
    eng = ScoringEngine.load(path, device="cpu")
    assert eng.kind == "decoder_yes"
    pairs = eng.encode("lift", ["wing " * 500, "short"], max_doc_tokens=20)
    assert all(p.ids[-len(eng._tail):] == eng._tail for p in pairs)   # "Answer:" survives truncation
    direct = load_reranker(path).score(["lift"], ["short"], max_length=512).numpy()
    np.testing.assert_allclose(eng.score(pairs[1:]), direct, atol=1e-5)
    # TEI's truncation_direction Left on a decoder: the document's end, the prompt kept whole
    end = eng.encode("lift", ["wing " * 500 + "aerofoil"], max_doc_tokens=20, keep="end")[0]
    assert end.ids[-len(eng._tail):] == eng._tail and end.ids != pairs[0].ids
    windows, owner = eng.windows("lift", ["wing " * 500], max_doc_tokens=20, overlap=4, max_windows=8)
    assert len(windows) == 8 and owner.tolist() == [0] * 8


def test_concurrent_tokenisation_in_one_engine_is_exact(engine):
    """Concurrent requests tokenise in threads of one replica: a fast tokenizer's truncation is
    shared state, so without the engine's lock pairs came out with another call's truncation (or
    failed with 'Second sequence not provided' when a window split ran at the same time)."""
    docs = ["lift and drag on an aerofoil " * 60, "short doc", "boundary layer " * 40]
    queries = [f"query {i} " + "word " * (i % 9) for i in range(12)]
    want = {(q, b): engine.encode(q, docs, max_doc_tokens=b) for q in queries for b in (16, 40)}
    want_windows = {q: engine.windows(q, docs, max_doc_tokens=32, overlap=8, max_windows=64)[0] for q in queries}

    def one(i):
        q, b = queries[i % 12], (16, 40)[i % 2]
        if i % 3 == 0:
            return engine.windows(q, docs, max_doc_tokens=32, overlap=8, max_windows=64)[0] == want_windows[q]
        return engine.encode(q, docs, max_doc_tokens=b) == want[q, b]

    with cf.ThreadPoolExecutor(8) as ex:
        assert all(ex.map(one, range(1500)))


def test_a_bare_encoder_is_refused(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="random head"):
        check_servable(str(tmp_path))


# -- service (no Ray) -------------------------------------------------------------------------

def _service(engine, **kw):
    cfg = ServeConfig(checkpoint="x", max_documents=10, max_request_bytes=4096, max_tokens_per_doc=64,
                      max_batch_tokens=512, model_aliases=["rerank-v3.5"], **kw)

    async def score(pairs):
        return engine.score(pairs)

    return RerankService(cfg, encode=engine.encode, score=score, model_info=engine.info(), api_keys=[KEY])


def _call(svc, api, body, auth=f"Bearer {KEY}"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return asyncio.run(svc.rerank(api, raw, auth))


def _chunk_max(engine, query, docs, budget, overlap=64, max_windows=64):
    """The served function for long documents: each document's best window."""
    texts, owner = engine.windows(query, docs, max_doc_tokens=budget, overlap=overlap, max_windows=max_windows)
    s = engine.score(engine.encode(query, texts, max_doc_tokens=budget))
    best = np.full(len(docs), -np.inf)
    np.maximum.at(best, owner, s)
    return best


def test_windows_cover_a_long_document_with_overlap(engine):
    query = "lift of a wing"
    budget = engine.doc_budget(query, 32)
    assert budget == 32
    short = "boundary layer flow"
    long_doc = " ".join(f"w{i}" for i in range(300))
    texts, owner = engine.windows(query, [short, long_doc], max_doc_tokens=32, overlap=8, max_windows=64)
    assert texts[0] == short and owner.tolist()[0] == 0 and set(owner.tolist()[1:]) == {1}
    parts = texts[1:]
    assert parts[0] == long_doc[:len(parts[0])] and long_doc.endswith(parts[-1])
    n = [len(engine.tok(t, add_special_tokens=False)["input_ids"]) for t in parts]
    # whole words: a window may run a word past the budget at either end (encode cuts the extra)
    assert max(n) <= budget + 6 and len(parts) >= len(engine.tok(long_doc, add_special_tokens=False)["input_ids"]) // 24
    q_len = len(engine.tok(query, add_special_tokens=False)["input_ids"])
    assert max(len(p.ids) for p in engine.encode(query, parts, max_doc_tokens=32)) <= q_len + budget + 3
    for a, b in zip(parts, parts[1:]):          # neighbours overlap
        assert a.split()[-1] in b.split() and b.split()[0] in a.split()
    capped, owner = engine.windows(query, [long_doc], max_doc_tokens=32, overlap=8, max_windows=3)
    assert len(capped) == 3 and capped[0] == parts[0] and capped[-1] == parts[-1]


def test_a_long_document_scores_as_its_best_window_unless_the_call_opts_out(engine):
    """serve.long_documents=chunk_max: a relevant passage far beyond the token budget still
    counts; TEI truncate, Cohere v2 max_tokens_per_doc and TEI Left truncation opt out."""
    svc = RerankService(_service(engine).cfg, encode=engine.encode, score=_service(engine)._score,
                        model_info=engine.info(), api_keys=[KEY], windows=engine.windows)
    query = "lift of a wing"
    long_doc = "a recipe for bread " * 120 + "the lift of a wing grows with the angle of attack " + "heat " * 300
    docs = [long_doc, DOCS[0], DOCS[1]]
    want = _chunk_max(engine, query, docs, 64)
    truncated = engine.score(engine.encode(query, docs, max_doc_tokens=64))
    assert want[0] != truncated[0]
    for api, body in (("cohere", {"model": "m", "query": query, "documents": docs}),
                      ("cohere_v1", {"model": "m", "query": query, "documents": docs}),
                      ("zeroentropy", {"model": "m", "query": query, "documents": docs}),
                      ("tei", {"query": query, "texts": docs})):
        code, payload = _call(svc, api, body)
        results = payload if api == "tei" else payload["results"]
        got = {r["index"]: r["score" if api == "tei" else "relevance_score"] for r in results}
        np.testing.assert_allclose([got[i] for i in range(3)], want, atol=1e-7, err_msg=api)
    for api, body in (("tei", {"query": query, "texts": docs, "truncate": True}),
                      ("cohere", {"model": "m", "query": query, "documents": docs, "max_tokens_per_doc": 64})):
        code, payload = _call(svc, api, body)
        results = payload if api == "tei" else payload["results"]
        got = {r["index"]: r["score" if api == "tei" else "relevance_score"] for r in results}
        np.testing.assert_allclose([got[i] for i in range(3)], truncated, atol=1e-7, err_msg=api)
    one = _call(svc, "cohere_v1", {"model": "m", "query": query, "documents": docs, "max_chunks_per_doc": 1})[1]
    assert {r["index"]: r["relevance_score"] for r in one["results"]}[0] == pytest.approx(truncated[0], abs=1e-7)
    # tokens: every window counts
    _, v1 = _call(svc, "cohere_v1", {"model": "m", "query": query, "documents": docs})
    assert v1["usage"]["total_tokens"] > len(engine.encode(query, docs, max_doc_tokens=64)[0].ids) * 3


def _as(api: str, body):
    """``body`` (a Cohere v2 request) in ``api``'s request shape."""
    if not isinstance(body, dict) or api in ("cohere", "zeroentropy"):
        return body
    body = dict(body)
    if api == "tei":
        body.pop("model", None)
        if "documents" in body:
            body["texts"] = body.pop("documents")
    return body


ERROR_KEY = {"cohere": "message", "cohere_v1": "message", "tei": "error", "zeroentropy": "detail"}


@pytest.mark.parametrize("body, status, words", [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    ({"model": "zelo-reranker", "query": "", "documents": ["a"]}, 400, "query"),
    ({"model": "zelo-reranker", "query": "  ", "documents": ["a"]}, 400, "query"),
    ({"model": "zelo-reranker", "query": "q", "documents": []}, 400, "at least one"),
    ({"model": "zelo-reranker", "query": "q", "documents": ["a"] * 11}, 400, "at most 10"),
    ({"model": "zelo-reranker", "query": "q", "documents": ["a", 3]}, 400, "[1]"),
    ({"model": "zelo-reranker", "query": "q"}, 400, "body"),
    ({"model": "zelo-reranker", "query": "q", "documents": ["a"], "top_n": 0}, 400, "top_n"),
    ({"model": "zelo-reranker", "query": "q", "documents": ["x" * 5000]}, 413, "max_request_bytes"),
])
def test_bad_input_is_a_4xx_that_names_the_problem(engine, body, status, words):
    svc = _service(engine)
    for api, key in ERROR_KEY.items():
        if api == "tei" and isinstance(body, dict) and "top_n" in body:
            continue   # TEI has no top_n
        code, payload = _call(svc, api, _as(api, body))
        assert code == status, (api, payload)
        message = payload[key]
        field = "texts" if api == "tei" else "documents"
        assert words.replace("body", field) in message or words in message, (api, message)


def test_documents_must_be_strings_except_on_v1_where_text_objects_are_accepted(engine):
    svc = _service(engine)
    body = {"model": "zelo-reranker", "query": "q", "documents": ["a", {"text": "b"}]}
    for api in ("cohere", "zeroentropy"):
        code, payload = _call(svc, api, body)
        assert code == 400 and "documents[1]" in payload[ERROR_KEY[api]]
    code, payload = _call(svc, "tei", {"query": "q", "texts": ["a", {"text": "b"}]})
    assert code == 400 and "texts[1]" in payload["error"] and payload["error_type"] == "Validation"
    code, payload = _call(svc, "cohere_v1", body)
    assert code == 200 and len(payload["results"]) == 2
    code, payload = _call(svc, "cohere_v1", {**body, "documents": ["a", {"txt": "b"}]})
    assert code == 400 and "documents[1]" in payload["message"]


def test_any_model_name_is_served_unless_strict(engine, caplog):
    """A client that switched only its base URL keeps sending its old provider's model name."""
    svc = _service(engine)
    for name in ("rerank-english-v3.0", "zerank-2", "gpt-9"):
        code, payload = _call(svc, "cohere", {"model": name, "query": "q", "documents": ["a"]})
        assert code == 200, payload
    code, payload = _call(svc, "cohere_v1", {"model": "jina-reranker-v2-base-multilingual", "query": "q",
                                             "documents": ["a"]})
    assert code == 200 and payload["model"] == "zelo-reranker"
    strict = _service(engine, strict_model=True)
    for api in ("cohere", "zeroentropy", "cohere_v1"):
        code, payload = _call(strict, api, {"model": "gpt-9", "query": "q", "documents": ["a"]})
        assert code == 404 and "gpt-9" in payload[ERROR_KEY[api]]
    assert _call(strict, "cohere", {"model": "rerank-v3.5", "query": "q", "documents": ["a"]})[0] == 200


def test_auth(engine):
    svc = _service(engine)
    body = {"model": "zelo-reranker", "query": "q", "documents": ["a"]}
    for api in ERROR_KEY:
        b = _as(api, body)
        assert _call(svc, api, b, auth=None)[0] == 401, api
        assert _call(svc, api, b, auth="Bearer nope")[0] == 401, api
        assert _call(svc, api, b, auth=f"Basic {KEY}")[0] == 401, api
        assert _call(svc, api, b)[0] == 200, api
    open_svc = RerankService(svc.cfg, encode=engine.encode, score=svc._score, model_info={}, api_keys=[])
    assert _call(open_svc, "cohere", body, auth=None)[0] == 200


def test_v1_and_tei_shapes(engine):
    """Cohere v1 / Jina and text-embeddings-inference responses validate against their documented
    shapes and rank like the model; TEI's raw_scores are the logits of the same order, and
    truncation_direction Left keeps the end of a long text."""
    svc = _service(engine)
    direct = engine.score(engine.encode("lift of a wing", DOCS, max_doc_tokens=64))
    want = np.argsort(-direct, kind="stable").tolist()
    code, v1 = _call(svc, "cohere_v1", {"model": "rerank-english-v3.0", "query": "lift of a wing",
                                        "documents": [{"text": d} for d in DOCS], "top_n": 3,
                                        "return_documents": True})
    assert code == 200
    V1RerankResponse.model_validate(v1)
    assert [r["index"] for r in v1["results"]] == want[:3]
    assert [r["document"]["text"] for r in v1["results"]] == [DOCS[i] for i in want[:3]]
    assert v1["usage"]["total_tokens"] > 0 and v1["meta"]["api_version"]["version"] == "1"
    _, plain = _call(svc, "cohere_v1", {"model": "rerank-english-v3.0", "query": "lift of a wing", "documents": DOCS})
    assert "document" not in plain["results"][0]                     # Cohere's default
    _, jina = _call(svc, "cohere_v1", {"model": "jina-reranker-v2-base-multilingual", "query": "lift of a wing",
                                       "documents": DOCS})
    assert jina["results"][0]["document"]["text"] == DOCS[want[0]]   # Jina's default
    code, tei = _call(svc, "tei", {"query": "lift of a wing", "texts": DOCS, "return_text": True})
    assert code == 200 and isinstance(tei, list)
    for r in tei:
        TEIRerankResult.model_validate(r)
    assert [r["index"] for r in tei] == want and tei[0]["text"] == DOCS[want[0]]
    np.testing.assert_allclose([r["score"] for r in tei], direct[want], atol=1e-5)
    _, raw = _call(svc, "tei", {"query": "lift of a wing", "texts": DOCS, "raw_scores": True})
    assert [r["index"] for r in raw] == want
    np.testing.assert_allclose([r["score"] for r in raw], np.log(direct[want] / (1 - direct[want])), atol=1e-4)
    # Left keeps the end of a long text: the pair holds its last tokens, cut at a token boundary
    long_doc = "a recipe for bread " * 200 + "the lift of a wing grows with the angle of attack"
    tail = engine._keep_end(long_doc, 16)
    assert long_doc.endswith(tail) and tail.endswith("angle of attack") and len(tail) < 120
    kept_end = engine.encode("lift of a wing", [long_doc], max_doc_tokens=16, keep="end")[0]
    assert kept_end.ids == engine.encode("lift of a wing", [tail], max_doc_tokens=16)[0].ids
    assert kept_end.ids != engine.encode("lift of a wing", [long_doc], max_doc_tokens=16)[0].ids
    _, left = _call(svc, "tei", {"query": "lift of a wing", "texts": [long_doc], "truncation_direction": "Left"})
    _, right = _call(svc, "tei", {"query": "lift of a wing", "texts": [long_doc]})
    for got, keep in ((left, "end"), (right, "start")):
        want_score = engine.score(engine.encode("lift of a wing", [long_doc], max_doc_tokens=64, keep=keep))[0]
        assert got[0]["score"] == pytest.approx(float(want_score), abs=1e-7)


def test_response_shapes_and_order(engine):
    svc = _service(engine)
    direct = engine.score(engine.encode("lift of a wing", DOCS, max_doc_tokens=64))
    code, c = _call(svc, "cohere", {"model": "rerank-v3.5", "query": "lift of a wing", "documents": DOCS,
                                    "top_n": 3, "return_documents": False})
    assert code == 200
    CohereRerankResponse.model_validate(c)
    assert [r["index"] for r in c["results"]] == np.argsort(-direct, kind="stable")[:3].tolist()
    assert c["meta"]["billed_units"]["search_units"] == 1 and c["meta"]["tokens"]["input_tokens"] > 0
    code, z = _call(svc, "zeroentropy", {"model": "zelo-reranker", "query": "lift of a wing", "documents": DOCS,
                                         "latency": "fast"})
    ZeroEntropyRerankResponse.model_validate(z)
    assert [r["index"] for r in z["results"]] == np.argsort(-direct, kind="stable").tolist()
    scores = [r["relevance_score"] for r in z["results"]]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert z["total_bytes"] == len("lift of a wing".encode()) + sum(len(d.encode()) for d in DOCS)
    # a request may ask for a smaller document budget, never a larger one
    small = _call(svc, "cohere", {"model": "zelo-reranker", "query": "q", "documents": DOCS[3:4],
                                  "max_tokens_per_doc": 8})[1]
    big = _call(svc, "cohere", {"model": "zelo-reranker", "query": "q", "documents": DOCS[3:4],
                                "max_tokens_per_doc": 100_000})[1]
    assert small["meta"]["tokens"]["input_tokens"] < big["meta"]["tokens"]["input_tokens"] <= 1 + 64 + 3


def test_settings_validation():
    with pytest.raises(ValueError, match="max_batch_tokens"):
        ServeConfig(max_batch_tokens=100, max_tokens_per_doc=512)
    with pytest.raises(ValueError, match="max_replicas"):
        ServeConfig(autoscaling={"min_replicas": 3, "max_replicas": 2})


# -- admission control (no Ray) ---------------------------------------------------------------

def test_admission_golden_cases():
    from zelo_ray.serve.admission import Admission

    gate = Admission(100)
    assert not gate.full() and gate.try_admit(1000)        # idle: one request of any size
    assert gate.full() and not gate.try_admit(1) and gate.shed == 1
    assert not gate.admits_any() and gate.shed == 2                     # refused before tokenising
    gate.release(1000)
    assert gate.admits_any() and gate.try_admit(60) and gate.try_admit(40) and not gate.try_admit(1)
    gate.release(60), gate.release(40)
    assert (gate.pending_tokens, gate.pending_requests, gate.shed) == (0, 0, 3)
    with pytest.raises(ValueError):
        Admission(0)


def test_a_request_past_the_token_budget_is_shed_in_its_api_shape_and_later_ones_are_answered(engine):
    """While one request is being scored, a second that would take the pending tokens past
    serve.max_pending_tokens gets 429 + Retry-After in its API's error body at once; when the
    first is done the same request is answered, with the scores the model gives."""
    from zelo_ray.serve.admission import Admission

    cfg = ServeConfig(checkpoint="x", max_tokens_per_doc=64, max_batch_tokens=512, max_pending_tokens=64,
                      retry_after_s=2.5)
    docs = ["lift of a wing at a high angle of attack " * 4] * 3      # ~ 3 × 40 tokens: over 64
    release = None

    async def score(pairs):
        await release.wait()  # hold the first request in the replica
        return engine.score(pairs)

    async def scenario():
        nonlocal release
        release = asyncio.Event()
        svc = RerankService(cfg, encode=engine.encode, score=score, model_info=engine.info(), api_keys=[],
                            admission=Admission(cfg.max_pending_tokens))
        body = lambda api: json.dumps({"query": "lift", "texts": docs} if api == "tei" else  # noqa: E731
                                      {"model": "m", "query": "lift", "documents": docs}).encode()
        first = asyncio.create_task(svc.rerank("cohere", body("cohere")))
        while svc.admission.pending_requests == 0:
            await asyncio.sleep(0.01)
        shed = {api: await svc.rerank(api, body(api)) for api in ("cohere", "cohere_v1", "tei", "zeroentropy")}
        release.set()
        return svc, await first, shed, await svc.rerank("tei", body("tei"))

    svc, (code, answer), shed, (code_after, after) = asyncio.run(scenario())
    assert code == 200 and len(answer["results"]) == 3
    assert {api: status for api, (status, _) in shed.items()} == dict.fromkeys(shed, 429)
    assert "overloaded" in shed["cohere"][1]["message"] and "retry after 2.5 s" in shed["cohere"][1]["message"]
    assert "overloaded" in shed["cohere_v1"][1]["message"]
    assert shed["tei"][1]["error_type"] == "Overloaded" and "overloaded" in shed["tei"][1]["error"]
    assert "overloaded" in shed["zeroentropy"][1]["detail"]
    assert svc.headers(429) == {"Retry-After": "3"} and svc.headers(400) is None
    want = engine.score(engine.encode("lift", docs, max_doc_tokens=64))
    assert code_after == 200 and np.allclose(sorted(x["score"] for x in after), sorted(want.tolist()), atol=1e-5)
    assert (svc.admission.pending_tokens, svc.admission.pending_requests, svc.admission.shed) == (0, 0, 4)


def test_deployment_bounds_the_proxy_queue_with_the_overload_status():
    from zelo_ray.serve.app import deployment_options

    opts = deployment_options(ServeConfig(checkpoint="x", max_queued_requests=8, overload_status=503,
                                          retry_after_s=4))
    assert opts["max_queued_requests"] == 8
    assert (opts["backpressure_config"].status_code, opts["backpressure_config"].retry_after_s) == (503, 4)
    assert ServeConfig(checkpoint="x").pending_tokens("cpu") == 2 * ServeConfig(checkpoint="x").batch_tokens("cpu")


def test_the_overload_benchmark_counts_every_request_and_judges_memory_by_its_trend():
    from zelo_ray.bench.overload import _flat, _summary, passed

    r = _summary([(200, 1.0), (429, 0.05), (429, 0.04), (0, 30.0), (-1, 0.1)], 5, 10.0, 30.0, 31.0, [1.0] * 4)
    assert (r["codes"], r["accepted_share"], r["shed_share"], r["other"]) == (
        {"200": 1, "429": 2, "0": 1, "-1": 1}, 0.2, 0.4, 2)       # a timeout or a refused connection is never hidden
    assert _flat([1000, 1200, 1210, 1205, 1212, 1208], 1210)      # a one-off step, then a plateau
    assert not _flat([1000, 1100, 1200, 1300, 1400, 1500], 1500)  # growing with the burst
    assert not _flat([1000, 1000, 1000, 1000], 1400)              # growing after it
    burst = {"other": 0, "p99_accepted_over_unloaded": 2.0, "duration_s": 30.0, "healthy_after": True,
             "rss_mb": {"every_2s": [1.0] * 6, "after": 1.0}}
    assert all(passed({"factor": 10.0, "admission": burst}).values())
    assert not passed({"factor": 10.0, "admission": {**burst, "p99_accepted_over_unloaded": 3.5}})[
        "p99_within_3x_unloaded"]


# -- Ray Serve over HTTP -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    import ray
    from ray import serve

    from zelo_ray.serve.app import build_app

    os.environ["RAY_TMPDIR"] = str(tmp_path_factory.mktemp("ray"))
    os.environ["ZELO_API_KEYS"] = f"other-key,{KEY}"   # replicas inherit the driver's environment
    os.environ["RAY_metrics_report_interval_ms"] = "500"  # metrics reach the endpoint within 0.5 s
    if ray.is_initialized():
        ray.shutdown()  # a session another test module left running lacks this environment
    ray.init(num_cpus=2, include_dashboard=False, _metrics_export_port=free_port())
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    # the batching and metrics tests want every request answered: admission control (shedding
    # past max_pending_tokens) has its own tests below, on its own app with a small budget
    serve.run(build_app({"checkpoint": checkpoint, "max_request_bytes": 65536, "max_batch_tokens": 2048,
                         "max_tokens_per_doc": 128, "model_aliases": ["rerank-v3.5", "zerank-1"],
                         "max_pending_tokens": 1 << 20}),
              name="zelo", route_prefix="/", blocking=False)
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()
    os.environ.pop("ZELO_API_KEYS")
    os.environ.pop("RAY_metrics_report_interval_ms")


H = {"Authorization": f"Bearer {KEY}"}


def test_http_both_apis_rank_like_the_model(server, engine):
    direct = _chunk_max(engine, "lift of a wing", DOCS, 128)
    want = np.argsort(-direct, kind="stable").tolist()
    r = requests.post(f"{server}/v2/rerank", headers=H, timeout=60,
                      json={"model": "rerank-v3.5", "query": "lift of a wing", "documents": DOCS, "top_n": 4})
    assert r.status_code == 200, r.text
    assert [x["index"] for x in r.json()["results"]] == want[:4]
    np.testing.assert_allclose([x["relevance_score"] for x in r.json()["results"]], direct[want[:4]], atol=1e-5)
    r = requests.post(f"{server}/v1/models/rerank", headers=H, timeout=60,
                      json={"model": "zerank-1", "query": "lift of a wing", "documents": DOCS})
    assert r.status_code == 200 and [x["index"] for x in r.json()["results"]] == want
    assert r.json()["total_tokens"] > 0 and r.json()["e2e_latency"] >= r.json()["inference_latency"] > 0


def test_http_official_cohere_client(server, engine):
    import cohere   # pinned in the dev extra: a missing client is a failure, not a skip

    client = cohere.ClientV2(api_key=KEY, base_url=server, timeout=60)
    res = client.rerank(model="rerank-v3.5", query="lift of a wing", documents=DOCS, top_n=3)
    direct = _chunk_max(engine, "lift of a wing", DOCS, 128)
    assert [x.index for x in res.results] == np.argsort(-direct, kind="stable")[:3].tolist()
    bad = cohere.ClientV2(api_key="wrong", base_url=server, timeout=60)
    with pytest.raises(Exception) as e:
        bad.rerank(model="rerank-v3.5", query="q", documents=["a"])
    assert "401" in str(e.value) or getattr(e.value, "status_code", None) == 401


def test_http_every_shape_on_one_server(server, engine):
    """Cohere v1 through the official client (`cohere.Client`), Jina and text-embeddings-inference
    through plain HTTP with their documented bodies: all four shapes on one deployment rank like
    the model, and each refuses a missing key."""
    import cohere

    direct = _chunk_max(engine, "lift of a wing", DOCS, 128)
    want = np.argsort(-direct, kind="stable").tolist()
    client = cohere.Client(api_key=KEY, base_url=server, timeout=60)
    res = client.rerank(model="rerank-english-v3.0", query="lift of a wing", documents=DOCS, top_n=3,
                        return_documents=True)
    assert [x.index for x in res.results] == want[:3]
    assert [x.document.text for x in res.results] == [DOCS[i] for i in want[:3]]
    r = requests.post(f"{server}/v1/rerank", headers=H, timeout=60,
                      json={"model": "jina-reranker-v2-base-multilingual", "query": "lift of a wing",
                            "documents": DOCS, "top_n": 2})
    assert r.status_code == 200, r.text
    V1RerankResponse.model_validate(r.json())
    assert [x["index"] for x in r.json()["results"]] == want[:2] and r.json()["usage"]["total_tokens"] > 0
    r = requests.post(f"{server}/rerank", headers=H, timeout=60,
                      json={"query": "lift of a wing", "texts": DOCS, "raw_scores": False, "truncate": True})
    assert r.status_code == 200, r.text
    assert [x["index"] for x in r.json()] == want
    np.testing.assert_allclose([x["score"] for x in r.json()], direct[want], atol=1e-5)
    for path, body in (("/rerank", {"query": "q", "texts": ["a"]}),
                       ("/v1/rerank", {"model": "m", "query": "q", "documents": ["a"]})):
        r = requests.post(f"{server}{path}", timeout=60, json=body)
        assert r.status_code == 401, (path, r.text)
    r = requests.post(f"{server}/rerank", headers=H, timeout=60, json={"query": "q", "texts": [1]})
    assert r.status_code == 400 and "texts[0]" in r.json()["error"]


def test_http_bad_input_is_never_a_5xx(server):
    url = f"{server}/v2/rerank"
    cases = [
        (dict(data=b"{bad", headers=H), 400),
        (dict(json={"model": "zelo-reranker", "query": "q", "documents": [1]}, headers=H), 400),
        (dict(json={"model": "zelo-reranker", "query": "", "documents": ["a"]}, headers=H), 400),
        (dict(json={"model": "zelo-reranker", "query": "q", "documents": ["a"] * 1001}, headers=H), 400),
        (dict(json={"model": "nope", "query": "q", "documents": ["a"]}, headers=H), 200),  # any name (not strict)
        (dict(json={"model": "zelo-reranker", "query": "q", "documents": ["x" * 70000]}, headers=H), 413),
        (dict(json={"model": "zelo-reranker", "query": "q", "documents": ["a"]}), 401),
        (dict(data=b'{"model": "zelo-reranker", "query": "x\\ud800", "documents": ["a"]}', headers=H), 400),
        (dict(json={"model": "zelo-reranker", "query": 'title:"CRF01_1b2k \x00 \u202e\u05e9 \U0001F600',
                    "documents": ["\x00", "AND OR NOT ( ["]}, headers=H), 200),
    ]
    for kw, status in cases:
        r = requests.post(url, timeout=60, **kw)
        assert r.status_code == status, (kw.get("json"), r.text)
        assert r.json()["message" if status >= 400 else "results"]
    assert requests.get(f"{server}/healthz", timeout=10).json()["status"] == "ok"
    models = requests.get(f"{server}/v1/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["zelo-reranker", "rerank-v3.5", "zerank-1"]
    paths = requests.get(f"{server}/openapi.json", timeout=10).json()["paths"]
    assert {"/v2/rerank", "/v1/rerank", "/rerank", "/v1/models/rerank", "/v1/models", "/healthz"} <= set(paths)
    assert requests.get(f"{server}/docs", timeout=10).status_code == 200


def test_http_concurrent_requests_are_batched_without_mixing_answers(server, engine):
    queries = [f"query {i} lift wing flow" for i in range(8)]
    docs = [f"document {j} about " + "lift " * (j % 7) + "flow " * (j % 5) for j in range(24)]
    want = {q: engine.score(engine.encode(q, docs, max_doc_tokens=128)) for q in queries}

    def one(i):
        q = queries[i % len(queries)]
        r = requests.post(f"{server}/v2/rerank", headers=H, timeout=120,
                          json={"model": "zelo-reranker", "query": q, "documents": docs})
        return q, r.status_code, r.json()

    with cf.ThreadPoolExecutor(16) as ex:
        out = list(ex.map(one, range(96)))
    assert all(code == 200 for _, code, _ in out)
    for q, _, body in out:
        got = np.empty(len(docs))
        for x in body["results"]:
            got[x["index"]] = x["relevance_score"]
        np.testing.assert_allclose(got, want[q], atol=1e-5)


def test_http_overload_is_shed_with_retry_after_and_the_accepted_answers_are_exact(server, engine, checkpoint):
    """A second app on the same Serve instance with a 64-token budget: 16 clients at once, each
    request over the budget, so all but about one at a time are shed — 429 with Retry-After and
    Cohere's error body, never another status; the accepted ones score exactly; nothing stays
    pending afterwards and the replica counted every shed request."""
    from ray import serve

    from zelo_ray.serve.app import build_app

    serve.run(build_app({"checkpoint": checkpoint, "max_batch_tokens": 2048, "max_tokens_per_doc": 128,
                         "max_pending_tokens": 64, "retry_after_s": 1}),
              name="tight", route_prefix="/tight", blocking=False)
    docs = [f"document {j} on the lift and drag of a wing " * 6 for j in range(10)]
    want = engine.score(engine.encode("lift of a wing", docs, max_doc_tokens=128))

    def one(_):
        r = requests.post(f"{server}/tight/v2/rerank", headers=H, timeout=120,
                          json={"model": "zelo-reranker", "query": "lift of a wing", "documents": docs})
        return r.status_code, r.headers.get("Retry-After"), r.json()

    try:
        with cf.ThreadPoolExecutor(16) as ex:
            out = list(ex.map(one, range(64)))
        codes = [c for c, _, _ in out]
        assert set(codes) <= {200, 429} and 200 in codes and 429 in codes, codes
        for code, retry_after, body in out:
            if code == 429:
                assert retry_after == "1" and "overloaded" in body["message"]
            else:
                got = np.empty(len(docs))
                for x in body["results"]:
                    got[x["index"]] = x["relevance_score"]
                np.testing.assert_allclose(got, np.clip(want, 0, 1), atol=1e-5)
        health = requests.get(f"{server}/tight/healthz", timeout=30).json()
        assert (health["pending_tokens"], health["pending_requests"]) == (0, 0)
        assert health["shed"] == codes.count(429) and health["rss_mb"] > 0
    finally:
        serve.delete("tight")


def _scrape(url: str) -> dict[tuple, float]:
    """``{(sample name, ((tag, value), …)): value}`` of the zelo samples on a Prometheus endpoint."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[tuple, float] = {}
    for fam in text_string_to_metric_families(requests.get(url, timeout=10).text):
        for smp in fam.samples:
            if smp.name.startswith("ray_zelo_rerank"):
                keep = tuple(sorted((k, v) for k, v in smp.labels.items() if k in ("api", "status", "le")))
                # one series per replica worker: sum them
                out[smp.name, keep] = out.get((smp.name, keep), 0.0) + smp.value
    return out


def _settled(url: str) -> dict[tuple, float]:
    """A scrape that no longer moves: what earlier tests sent has all been reported."""
    last = _scrape(url)
    for _ in range(40):
        time.sleep(1.2)
        now = _scrape(url)
        if now == last:
            return now
        last = now
    raise AssertionError("the metrics endpoint kept changing with no load")


def test_http_metrics_reach_the_ray_metrics_endpoint_during_a_load_test(server, engine):
    """zelo's request, latency, size, error and batch metrics are on Ray's Prometheus endpoint
    while 16 clients load the server, and once it settles every request is counted exactly once."""
    from zelo_ray.raysession import metrics_url

    url = metrics_url()
    assert url and url.startswith("http://"), url
    before = _settled(url)

    def delta(now: dict, name: str, **tags) -> float:
        key = (name, tuple(sorted(tags.items())))
        return now.get(key, 0.0) - before.get(key, 0.0)

    rng = np.random.default_rng(3)
    n_docs = [int(rng.integers(1, 21)) for _ in range(96)]
    bodies = [{"query": f"lift on a wing {i}", "texts": [DOCS[(i + j) % 4] + f" {j}" for j in range(n)]}
              for i, n in enumerate(n_docs)]
    calls = [(b, H) for b in bodies] + [({"query": "", "texts": ["a"]}, H)] * 6 + [({"query": "q", "texts": ["a"]}, {})] * 4
    seen_during_load, done = [], threading.Event()

    def watch():
        while not done.is_set():
            seen_during_load.append(delta(_scrape(url), "ray_zelo_rerank_requests_total", api="tei", status="200"))
            time.sleep(0.3)

    watcher = threading.Thread(target=watch)
    watcher.start()
    with cf.ThreadPoolExecutor(16) as ex:
        answers = list(ex.map(lambda c: requests.post(f"{server}/rerank", json=c[0], headers=c[1], timeout=120),
                              calls))
    done.set()
    watcher.join()
    codes = [r.status_code for r in answers]
    assert codes == [200] * 96 + [400] * 6 + [401] * 4, [(i, r.status_code, r.text[:300]) for i, r in
                                                          enumerate(answers) if r.status_code >= 500]
    assert max(seen_during_load) > 0, "no request was counted while the load ran"

    for _ in range(60):
        now = _scrape(url)
        if delta(now, "ray_zelo_rerank_requests_total", api="tei", status="200") >= 96:
            break
        time.sleep(0.5)
    time.sleep(1.5)  # one more report: nothing may be counted twice
    now = _scrape(url)
    assert delta(now, "ray_zelo_rerank_requests_total", api="tei", status="200") == 96
    assert delta(now, "ray_zelo_rerank_errors_total", api="tei", status="400") == 6
    assert delta(now, "ray_zelo_rerank_errors_total", api="tei", status="401") == 4
    assert delta(now, "ray_zelo_rerank_errors_total", api="tei", status="200") == 0
    assert delta(now, "ray_zelo_rerank_latency_seconds_count", api="tei") == 106
    assert delta(now, "ray_zelo_rerank_latency_seconds_bucket", api="tei", le="+Inf") == 106
    # the documents histogram's buckets hold the request sizes that were sent
    assert delta(now, "ray_zelo_rerank_documents_count", api="tei") == 96
    for le, label in ((1, "1.0"), (5, "5.0"), (10, "10.0"), (20, "20.0")):
        assert delta(now, "ray_zelo_rerank_documents_bucket", api="tei", le=label) == sum(n <= le for n in n_docs)
    assert delta(now, "ray_zelo_rerank_tokens_count", api="tei") == 96
    assert delta(now, "ray_zelo_rerank_tokens_bucket", api="tei", le="64.0") < 96  # 20 documents are > 64 tokens
    # exact counters: every token and every extra window of a long document, as the service scores them
    n_tokens = n_windows = 0
    for body in bodies:
        texts, _ = engine.windows(body["query"], body["texts"], max_doc_tokens=128, overlap=64, max_windows=64)
        n_tokens += sum(p.n_tokens for p in engine.encode(body["query"], texts, max_doc_tokens=128))
        n_windows += len(texts) - len(body["texts"])
    assert n_windows > 0
    assert delta(now, "ray_zelo_rerank_scored_tokens_total", api="tei") == n_tokens
    assert delta(now, "ray_zelo_rerank_windows_total", api="tei") == n_windows
    batches = delta(now, "ray_zelo_rerank_batch_requests_count")
    alone = delta(now, "ray_zelo_rerank_batch_requests_bucket", le="1.0")
    assert 0 < batches and alone < batches, "no batch merged two requests under 16 concurrent clients"
    assert delta(now, "ray_zelo_rerank_batch_fill_count") == batches == delta(now, "ray_zelo_rerank_batch_pairs_count")


def test_the_gpu_serving_check_runs_end_to_end_dry_on_cpu(tmp_path):
    """benchmarks/gpu_serve.py is run only on a lent GPU machine; its dry mode (CPU, tiny
    models) runs every part here so the script is known to work before device time is spent."""
    out = tmp_path / "gpu_serve.json"
    r = subprocess.run([sys.executable, "-m", "benchmarks.gpu_serve", "--dry", "--out", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["dry_run"] is True
    for model in ("minilm", "decoder_0.5b"):
        assert [x["payload_kb"] for x in res[model]["latency"]] == [12, 150]
        long = res[model]["long_documents"]
        assert [(x["payload_kb"], x["documents"]) for x in long] == [(12, 1), (150, 5)]
        assert all(x["windows"] > x["documents"] and x["p50_ms"] <= x["p99_ms"] for x in long)
        assert (res[model]["batching"]["clients"], res[model]["batching_64"]["clients"]) == (16, 64)
        assert res[model]["batching_64"]["speedup"] > 0


def test_serve_yaml_is_a_valid_serve_config(checkpoint):
    from ray.serve.schema import ServeDeploySchema

    from zelo_ray.serve.app import build_app

    doc = yaml.safe_load((ROOT / "pipelines/configs/serve.yaml").read_text())
    schema = ServeDeploySchema.model_validate(doc)
    app = schema.applications[0]
    assert app.import_path == "zelo_ray.serve.app:build_app"
    dep = app.deployments[0]
    assert dep.name == "RerankServer" and dep.max_ongoing_requests >= 16
    assert dep.autoscaling_config["max_replicas"] >= dep.autoscaling_config["min_replicas"] >= 1
    build_app({**app.args, "checkpoint": checkpoint})   # the args validate as a serve section
    with pytest.raises(ValueError, match="max_documents"):
        build_app({**app.args, "checkpoint": checkpoint, "max_documents": 0})


def _run_until_serving(cmd: list[str], env: dict, port: int, ready) -> str:
    """Start a server process, wait until ``ready(lines)``, call both APIs, stop it with Ctrl-C."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.time() + 180
        while not ready(lines, port):
            assert time.time() < deadline and proc.poll() is None, "".join(lines)
            time.sleep(1)
        r = requests.post(f"http://127.0.0.1:{port}/v1/models/rerank", timeout=60,
                          json={"model": "zelo-reranker", "query": "lift", "documents": ["a", "b"]})
        assert r.status_code == 200 and len(r.json()["results"]) == 2
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        reader.join(timeout=10)
    return "".join(lines)


def _server_env(ray_tmp: str) -> dict:
    env = {**os.environ, "RAY_TMPDIR": ray_tmp}
    env.pop("ZELO_API_KEYS", None)
    env.pop("RAY_ADDRESS", None)
    return env


def test_zelo_serve_cli_end_to_end(checkpoint, ray_tmp):
    """`zelo serve --checkpoint` in its own process: answers, then stops cleanly on Ctrl-C."""
    port = free_port()
    out = _run_until_serving([sys.executable, "-m", "zelo_ray.cli", "serve", "--checkpoint", checkpoint,
                              "--port", str(port), "--set", "ray.num_cpus=2"], _server_env(ray_tmp), port,
                             lambda lines, _: any(line.startswith("serving ") for line in lines))
    assert "/v2/rerank" in out and "shutting down" in out


def test_serve_run_with_the_serve_yaml(checkpoint, ray_tmp, tmp_path):
    """Ray Serve's own CLI on pipelines/configs/serve.yaml (checkpoint and bind address swapped)."""
    doc = yaml.safe_load((ROOT / "pipelines/configs/serve.yaml").read_text())
    port = free_port()
    doc["http_options"] = {"host": "127.0.0.1", "port": port}
    doc["applications"][0]["args"]["checkpoint"] = checkpoint
    doc["applications"][0]["deployments"][0]["ray_actor_options"]["num_cpus"] = 0.5
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(doc))

    def healthy(lines, port):
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    _run_until_serving([str(Path(sys.executable).parent / "serve"), "run", str(path)], _server_env(ray_tmp),
                       port, healthy)


def test_a_checkpoint_uri_is_fetched_once_into_a_local_cache(checkpoint, tmp_path):
    from zelo_ray.storage import local_copy

    uri = f"file://{checkpoint}"
    local = local_copy(uri, cache=tmp_path)
    assert local != checkpoint and Path(local, "zelo_card.json").exists()
    assert ScoringEngine.load(local, device="cpu").kind == "cross_encoder"
    assert local_copy(checkpoint) == checkpoint          # a local path is used as it is


def test_engine_tokenises_a_short_query_exactly_as_the_tokenizer_does(engine):
    query = "Don't wings' lift-to-drag ratios (L/D) matter?"
    docs = ["Lift, drag & stall: what's the ratio?", "a recipe"]
    pairs = engine.encode(query, docs, max_doc_tokens=64)
    want = engine.tok([query] * 2, docs, truncation="only_second", max_length=512)
    assert [list(p.ids) for p in pairs] == want["input_ids"]


def test_push_sends_new_and_rewritten_files_only(tmp_path):
    import os as _os

    from zelo_ray.storage import pull, push

    src, dst = tmp_path / "run", f"file://{tmp_path / 'durable'}"
    (src / "votes").mkdir(parents=True)
    (src / "votes" / "part-0.parquet").write_bytes(b"x" * 100)
    (src / "report.json").write_text('{"a": 1}')
    assert push(src, dst) == 2
    assert push(src, dst) == 0                                  # unchanged: nothing re-sent
    (src / "report.json").write_text('{"a": 2}')                # rewritten in place, same size
    later = time.time() + 5
    _os.utime(src / "report.json", (later, later))
    assert push(src, dst) == 1
    fresh = tmp_path / "fresh"
    assert pull(dst, fresh) == 2 and (fresh / "report.json").read_text() == '{"a": 2}'
