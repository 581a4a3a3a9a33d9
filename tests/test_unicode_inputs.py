"""Arbitrary Unicode at every place user text meets a parser: BM25 search, dense query
embedding, both rerank APIs and the judge prompt. Retrieval returns a (possibly empty) ranking;
the API answers 2xx or a 4xx naming the field — never a 5xx, never an exception."""

import asyncio
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.helpers import write_beir
from zelo_ray.data import prepare
from zelo_ray.judges.prompt import build_messages
from zelo_ray.retrieval.bm25 import BM25Searcher, build_bm25
from zelo_ray.retrieval.dense import DenseSearcher, DenseStore
from zelo_ray.serve.engine import ScoringEngine
from zelo_ray.serve.service import RerankService
from zelo_ray.config.serve import ServeConfig
from zelo_ray.scoring.models import load_reranker, save_reranker, tiny_encoder

WORDS = "wing lift drag flow shock boundary layer heat plate cone jet nozzle crf01 1b2k".split()
SPECIALS = ['"', '""', '"wing lift"', "'", ":", "_", "-", "+", "^", "~", "*", "\\", "(", ")", "[", "]", "{", "}",
            "AND", "OR", "NOT", "title:", "body:wing", "row:3", "CRF01_1b2k", "a_b_c", "wing~2", "lift^3",
            "the", "of a", "\x00", "\x07", "\u200b", "\u202e", "😀", "👩‍🔬", "שלום", "مرحبا", "日本語", "é",
            "\ufeff", "\t\n", "/", "?", "!", "&&", "||", "<", ">", "=", "$", "%", "@", "#"]
QUERIES = st.one_of(
    st.text(max_size=60),
    st.lists(st.one_of(st.sampled_from(SPECIALS), st.sampled_from(WORDS), st.text(max_size=8)),
             max_size=14).map(" ".join),
    st.lists(st.sampled_from(SPECIALS), max_size=10).map("".join),
)
LONG = "CRF01_1b2k " + "wing: \"lift\" AND (drag) " * 400 + "😀" * 200  # ~10,000 characters
ISSUE = "The origin of the CRF01_1b2k protein occurred between 1923 and 1956."
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = np.random.default_rng(0)
    docs = [{"_id": f"d{i}", "title": "", "text": " ".join(rng.choice(WORDS, 15))} for i in range(80)]
    docs[5]["text"] += " CRF01_1b2k protein"
    tmp = tmp_path_factory.mktemp("u")
    return prepare(str(write_beir(tmp / "beir", docs, [{"_id": "q", "text": "x"}])), tmp / "data")


@pytest.fixture(scope="module")
def bm25(corpus, tmp_path_factory):
    path = tmp_path_factory.mktemp("bm25")
    build_bm25(corpus.corpus_path, path)
    return BM25Searcher(path, threads=2)


def _valid_ranking(rows, scores, k, n_docs):
    assert len(rows) == len(scores) <= min(k, n_docs)
    assert len(set(rows.tolist())) == len(rows) and np.all((rows >= 0) & (rows < n_docs))
    assert np.all(np.isfinite(scores)) and np.all(np.diff(scores) <= 1e-6)


@FAST
@given(QUERIES)
@example(LONG)
@example(ISSUE)
@example("")
@example("the of a and")  # nothing left after stop-word removal
@example('"unbalanced quote AND (bracket')
def test_bm25_answers_any_text(bm25, text):
    (rows, scores), = bm25.search([text], k=10)
    _valid_ranking(rows, scores, 10, 80)


def test_bm25_underscore_query_finds_its_document(bm25):
    (rows, _), = bm25.search([ISSUE], k=3)
    assert rows[0] == 5


@pytest.fixture(scope="module")
def dense(corpus, tmp_path_factory):
    from zelo_ray.retrieval.embedder import Embedder, _vector_column

    emb = Embedder(threads=2)
    texts = pq.read_table(corpus.corpus_path, columns=["text"])["text"].to_pylist()
    store = DenseStore(tmp_path_factory.mktemp("dense"), model="default")
    store.append([pa.table({"row": np.arange(len(texts)), "vector": _vector_column(emb.encode(texts))})])
    store.finalise(n_rows=len(texts), ann_min_rows=10**9)
    return emb, DenseSearcher(store.uri)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(QUERIES)
@example(LONG)
@example("")
@example("\x00\x00")
def test_dense_embeds_and_searches_any_text(dense, text):
    emb, searcher = dense
    v = emb.encode([text])
    assert v.shape == (1, 384) and np.all(np.isfinite(v)) and abs(np.linalg.norm(v) - 1) < 1e-3
    (rows, scores), = searcher.search(v, k=10)
    _valid_ranking(rows, scores, 10, 80)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    base = tiny_encoder(tmp_path_factory.mktemp("base"))
    ckpt = tmp_path_factory.mktemp("ckpt") / "model"
    save_reranker(load_reranker(base), ckpt, {"note": "test"})
    engine = ScoringEngine.load(str(ckpt), device="cpu", max_batch_tokens=4096, max_batch_rows=8)
    cfg = ServeConfig(checkpoint="x", max_documents=8, max_request_bytes=1 << 20, max_tokens_per_doc=64,
                      max_batch_tokens=4096)

    async def score(pairs):
        return engine.score(pairs)
    return RerankService(cfg, encode=engine.encode, score=score, model_info=engine.info(), api_keys=[])


def _check_answer(svc, api, body: bytes, n_docs: int | None):
    status, payload = asyncio.run(svc.rerank(api, body, None))
    assert status < 500, payload
    if status == 200:
        results = payload if api == "tei" else payload["results"]
        assert sorted(r["index"] for r in results) == list(range(n_docs))
        assert all(0.0 <= r["score" if api == "tei" else "relevance_score"] <= 1.0 for r in results)
    else:
        message = payload[{"zeroentropy": "detail", "tei": "error"}.get(api, "message")]
        assert 400 <= status < 500 and any(f in message for f in ("query", "documents", "texts", "body", "JSON"))
    return status


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(QUERIES, st.lists(QUERIES, min_size=1, max_size=4))
@example(LONG, [LONG, ISSUE, "", "\x00"])
@example("   ", ["a"])
def test_every_rerank_api_answers_any_text_with_2xx_or_a_named_4xx(service, query, docs):
    bodies = {"cohere": {"model": "zelo-reranker", "query": query, "documents": docs},
              "zeroentropy": {"model": "zelo-reranker", "query": query, "documents": docs},
              "cohere_v1": {"model": "rerank-english-v3.0", "query": query, "documents": [{"text": d} for d in docs]},
              "tei": {"query": query, "texts": docs, "truncation_direction": "Left"}}
    for api, body in bodies.items():
        status = _check_answer(service, api, json.dumps(body).encode(), len(docs))
        assert (status == 200) == bool(query.strip()), api


def test_unpaired_surrogates_are_a_4xx_naming_the_field(service):
    for body, field in ((b'{"model": "zelo-reranker", "query": "a\\ud800b", "documents": ["x"]}', "query"),
                        (b'{"model": "zelo-reranker", "query": "q", "documents": ["x", "\\udfff"]}', "documents[1]")):
        for api, key in (("cohere", "message"), ("zeroentropy", "detail")):
            status, payload = asyncio.run(service.rerank(api, body, None))
            assert status == 400 and payload[key].startswith(f"{field}: contains an unpaired surrogate")


@FAST
@given(QUERIES, QUERIES, QUERIES)
def test_judge_prompt_carries_any_text_verbatim(query, first, second):
    messages = build_messages(query, first, second, max_doc_chars=10_000)
    user = messages[-1]["content"]
    assert query in user and first in user and second in user


@pytest.fixture(scope="module")
def pairwise_lm(tmp_path_factory):
    from zelo_ray.scoring.models import tiny_decoder
    from zelo_ray.train.pairwise import PairwiseLM

    return PairwiseLM.load(tiny_decoder(tmp_path_factory.mktemp("plm") / "m", hidden=16, layers=1, intermediate=32))


@FAST
@given(QUERIES, QUERIES, QUERIES)
@example(LONG, LONG, "")
def test_the_pairwise_slm_reads_any_text_in_both_orders(pairwise_lm, query, first, second):
    """The SLM loop's prompt (the one vLLM is sent) for any query and documents: it keeps the
    question within the token budget and gives a probability for each order."""
    from zelo_ray.judges.vllm_pairwise import slm_prompt

    assert slm_prompt(query, first, second, max_doc_chars=10_000).endswith("Answer:")
    enc = pairwise_lm.encode([query, query], [first, second], [second, first], max_length=64)
    assert enc["input_ids"].shape[1] <= 64 and (enc["attention_mask"].sum(dim=1) >= 1).all()
    p = pairwise_lm.prob_first([query, query], [first, second], [second, first], max_length=64).numpy()
    assert p.shape == (2,) and np.isfinite(p).all() and ((0 <= p) & (p <= 1)).all()
