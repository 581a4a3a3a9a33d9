"""The ONNX Runtime backends: exported graphs score like PyTorch, the export is made once and
cached beside the folder, and every place a model runs (serving engine, reranking, the dense
indexer) takes the backend."""

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zelo_ray.runtime import export as export_mod
from zelo_ray.runtime.backend import check_backend
from zelo_ray.runtime.export import exported
from zelo_ray.scoring.models import load_reranker, save_reranker, tiny_decoder, tiny_encoder
from zelo_ray.scoring.onnx_reranker import load_scorer

QUERIES = ["what is lift", "wärmeübergang in überschallströmung?", "", "🙂 " * 40]
DOCS = ["lift is a force on a wing " * 30, "a recipe", "Ωμέγα — 数据 ∑ \u200b tabs\tand\nnewlines",
        "x" * 3000]


def pairs():
    return [q for q in QUERIES for _ in DOCS], [d for _ in QUERIES for d in DOCS]


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    """A MiniLM cross-encoder checkpoint (fresh head, saved once) and a copy of the packaged
    MiniLM embedding folder: exports land beside them, not in site-packages."""
    from zelo_ray.retrieval.embedder import resolve_model

    root = tmp_path_factory.mktemp("minilm")
    torch.manual_seed(0)
    ce = save_reranker(load_reranker("default", "cross_encoder"), root / "ce", {})
    emb = root / "emb"
    shutil.copytree(resolve_model("default"), emb, ignore=shutil.ignore_patterns("onnx"))
    return ce, emb


def test_cross_encoder_scores_equal_torch_to_1e4_in_every_shape(minilm):
    ce, _ = minilm
    q, d = pairs()
    ref, onnx = load_scorer(str(ce)), load_scorer(str(ce), backend="onnx")
    for batch_size, max_length in ((1, 16), (5, 256), (16, 512)):
        got = onnx.score(q, d, max_length=max_length, batch_size=batch_size)
        want = ref.score(q, d, max_length=max_length, batch_size=batch_size)
        assert got.shape == want.shape == (len(d),)
        assert float((got - want).abs().max()) <= 1e-4


def test_int8_is_a_quarter_of_the_size_and_ranks_like_fp32(minilm):
    """On the pretrained embedding model (a fresh cross-encoder head scores everything ~0.5, too
    flat to rank): int8 vectors order documents as the fp32 ones do."""
    from scipy.stats import spearmanr

    ce, emb = minilm
    topics = ["wing lift and drag", "bread and butter recipes", "heat transfer in pipes", "stock markets",
              "protein folding", "medieval castles", "jazz improvisation", "volcano eruptions"]
    docs = [f"{t}: notes number {i} on {t.split()[0]}" for i, t in enumerate(topics * 3)]
    fp32 = _embedders(emb, "torch").encode(topics) @ _embedders(emb, "torch").encode(docs).T
    int8 = _embedders(emb, "onnx-int8").encode(topics) @ _embedders(emb, "onnx-int8").encode(docs).T
    # measured: mean |Δcos| 0.021, max 0.082, per-query Spearman 0.88-0.98 (the order of the
    # unrelated documents, all near cos 0, is what moves); each topic's own three stay on top
    assert np.abs(int8 - fp32).mean() < 0.04
    assert min(spearmanr(a, b).statistic for a, b in zip(int8, fp32)) > 0.8
    own = np.arange(len(topics))[:, None]
    assert (np.argsort(-int8, 1)[:, :3] % len(topics) == own).all()
    assert (np.argsort(-fp32, 1)[:, :3] % len(topics) == own).all()
    # the cross-encoder's int8 graph moves its scores a little and is a quarter of the size
    q, d = pairs()
    delta = load_scorer(str(ce), backend="onnx-int8").score(q, d) - load_scorer(str(ce)).score(q, d)
    assert float(delta.abs().max()) < 0.05
    size = {p.name: p.stat().st_size for p in (ce / "onnx").glob("*.onnx")}
    assert size["logit-int8.onnx"] < 0.35 * size["logit.onnx"]


def test_bi_encoder_checkpoint_scores_equal_torch(tmp_path, minilm):
    _, emb = minilm
    model = load_reranker(str(emb))
    assert model.kind == "bi_encoder"
    with torch.no_grad():
        model.scale.fill_(17.0)
        model.bias.fill_(-8.0)
    ckpt = save_reranker(model, tmp_path / "bi", {})
    q, d = pairs()
    want = load_scorer(str(ckpt)).score(q, d, max_length=128)
    got = load_scorer(str(ckpt), backend="onnx").score(q, d, max_length=128)
    assert float((got - want).abs().max()) <= 1e-4


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(min_size=0, max_size=300), min_size=1, max_size=6))
def test_onnx_embedder_gives_sentence_transformers_vectors(minilm, texts):
    _, emb = minilm
    want = _embedders(emb, "torch").encode(texts)
    got = _embedders(emb, "onnx").encode(texts)
    assert got.shape == want.shape == (len(texts), 384)
    assert float(np.abs(got - want).max()) <= 1e-4


@settings(max_examples=40, deadline=None)
@given(texts=st.lists(st.text(min_size=0, max_size=600), min_size=1, max_size=4),
       max_length=st.sampled_from([4, 16, 256]))
def test_the_light_tokenizer_gives_transformers_ids(texts, max_length):
    """The embedding actor tokenises without transformers (:mod:`zelo_ray.runtime.tokens`);
    its ids, truncation included, are AutoTokenizer's on any Unicode."""
    from transformers import AutoTokenizer

    from zelo_ray.retrieval.embedder import resolve_model
    from zelo_ray.runtime.tokens import TextTokenizer

    folder = resolve_model("default")
    if folder not in _TOKENIZERS:
        _TOKENIZERS[folder] = (TextTokenizer(folder), AutoTokenizer.from_pretrained(folder))
    light, hf = _TOKENIZERS[folder]
    assert light(texts, max_length=max_length) == hf(texts, truncation=True, max_length=max_length)["input_ids"]
    assert light.pad_id == hf.pad_token_id and light.model_max_length == hf.model_max_length


_TOKENIZERS: dict = {}
_EMBEDDERS: dict = {}


def _embedders(folder, backend):
    """One Embedder per backend for all the generated examples (loading is the slow part)."""
    from zelo_ray.retrieval.embedder import Embedder

    key = (str(folder), backend)
    if key not in _EMBEDDERS:
        _EMBEDDERS[key] = Embedder(str(folder), backend=backend, batch_size=4, threads=2)
    return _EMBEDDERS[key]


def test_export_is_cached_and_redone_when_the_weights_change(tmp_path, monkeypatch):
    folder = Path(tiny_encoder(tmp_path / "tiny"))
    calls = []
    real = export_mod._export
    monkeypatch.setattr(export_mod, "_export", lambda *a: (calls.append(a[1]), real(*a)))
    first = exported(folder, head="logit")
    assert first == folder / "onnx" / "logit.onnx" and calls == ["logit"]
    assert exported(folder, head="logit") == first and calls == ["logit"]
    exported(folder, head="logit", int8=True)
    assert calls == ["logit"]  # int8 is made from the cached fp32 graph
    tiny_encoder(folder, hidden=48)  # retrained: other weights under the same name
    exported(folder, head="logit")
    assert calls == ["logit", "logit"]
    assert load_scorer(str(folder), backend="onnx").score(["q"], ["d"]).shape == (1,)


def test_two_exporters_at_once_export_once(tmp_path, monkeypatch):
    folder = Path(tiny_encoder(tmp_path / "tiny"))
    calls = []
    real = export_mod._export
    monkeypatch.setattr(export_mod, "_export", lambda *a: (calls.append(a[1]), real(*a)))
    out = []
    threads = [threading.Thread(target=lambda: out.append(exported(folder, head="logit"))) for _ in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert calls == ["logit"] and len(set(out)) == 1 and out[0].exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_exports_into_the_user_cache(tmp_path, monkeypatch):
    folder = Path(tiny_encoder(tmp_path / "tiny"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder.chmod(0o555)
    try:
        path = exported(folder, head="logit")
    finally:
        folder.chmod(0o755)
    assert str(path).startswith(str(tmp_path / "cache" / "zelo-ray" / "onnx"))


def test_a_read_only_folder_falls_back_to_the_user_cache(tmp_path, monkeypatch):
    """As above for any user: the folder's onnx/ cannot be made (a file of that name is in the way)."""
    folder = Path(tiny_encoder(tmp_path / "tiny"))
    (folder / "onnx").write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = exported(folder, head="logit")
    assert path.parent.parent == tmp_path / "cache" / "zelo-ray" / "onnx" and path.exists()


def test_a_decoder_on_onnx_is_refused_naming_the_setting(tmp_path):
    folder = tiny_decoder(tmp_path / "dec")
    with pytest.raises(ValueError, match=r"serve.backend=onnx-int8 runs encoders .* needs serve.backend=torch"):
        load_scorer(folder, backend="onnx-int8", where="serve.backend")
    with pytest.raises(ValueError, match="expected one of torch, onnx, onnx-int8"):
        check_backend("tensorrt", "cross_encoder", where="rerank.backend")


def test_backend_settings_are_validated_by_the_config():
    from zelo_ray.config import ConfigError, load_config

    cfg = load_config(None, ["serve.backend=onnx-int8", "rerank.backend=onnx", "index.backend=onnx"])
    assert (cfg.serve.backend, cfg.rerank.backend, cfg.index.backend) == ("onnx-int8", "onnx", "onnx")
    with pytest.raises(ConfigError, match="serve.backend"):
        load_config(None, ["serve.backend=tensorrt"])


def test_serving_engine_on_onnx_scores_like_torch(minilm):
    from zelo_ray.serve.engine import ScoringEngine

    ce, _ = minilm
    ref = ScoringEngine.load(str(ce), device="cpu", max_batch_tokens=2048)
    onnx = ScoringEngine.load(str(ce), device="cpu", backend="onnx", max_batch_tokens=2048)
    assert onnx.info()["backend"] == "onnx" and ref.info()["backend"] == "torch"
    assert onnx.max_length == ref.max_length
    for q in QUERIES:
        want = ref.score(ref.encode(q, DOCS, max_doc_tokens=200))
        got = onnx.score(onnx.encode(q, DOCS, max_doc_tokens=200))
        assert np.abs(got - want).max() <= 1e-4


def test_query_scorer_reranks_on_onnx(minilm):
    import pyarrow as pa

    from zelo_ray.scoring.scorer import QueryScorer

    ce, _ = minilm
    rows = pa.table({"query_id": ["q1", "q2"], "query": QUERIES[:2], "doc_ids": [["a", "b"], ["c", "d"]],
                     "docs": [DOCS[:2], DOCS[2:]]})
    want = QueryScorer(str(ce), fusion=False)(rows)
    got = QueryScorer(str(ce), fusion=False, backend="onnx", threads=2)(rows)
    assert got["error"].null_count == 2
    assert np.abs(np.concatenate(got["model"].to_pylist()) - np.concatenate(want["model"].to_pylist())).max() <= 1e-4


def test_the_gpu_backend_check_runs_end_to_end_dry_on_cpu(tmp_path):
    """benchmarks/gpu_backends.py runs only on a lent GPU; its dry mode (CPU, a tiny model) runs
    every part here, so the script is known to work before device time is spent."""
    import json
    import subprocess
    import sys

    out = tmp_path / "gpu_backends.json"
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", "benchmarks.gpu_backends", "--dry", "--out", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["dry_run"] is True
    serving = res["serving"]
    assert set(serving) == {"torch_fp32", "onnx", "onnx_int8"}
    assert serving["onnx"]["max_abs_delta_vs_torch_fp32"] <= 1e-4
    assert all(v["docs_per_s"] > 0 and v["p50_ms"] <= v["p99_ms"] for v in serving.values())
    dense = res["dense_indexing_docs_per_s"]
    assert all(dense[k] > 0 for k in ("sentence_transformers", "torch", "onnx"))


def test_query_tower_checkpoint_scores_equal_torch_and_serves_with_its_document_tower(tmp_path, minilm):
    """A trained query tower (the demo's kind): documents go through the frozen document tower
    and the learned map, on every backend and in the serving engine."""
    from zelo_ray.serve.engine import ScoringEngine

    _, emb = minilm
    model = load_reranker(str(emb), towers="query")
    with torch.no_grad():
        torch.manual_seed(1)
        model.doc_map.normal_(0, 0.05)
        for p in model.model.parameters():  # the query tower moved away from the document tower
            p.add_(torch.randn_like(p) * 0.01)
    ckpt = save_reranker(model, tmp_path / "qt", {})
    q, d = pairs()
    want = load_scorer(str(ckpt)).score(q, d, max_length=128)
    got = load_scorer(str(ckpt), backend="onnx").score(q, d, max_length=128)
    assert float((got - want).abs().max()) <= 1e-4
    for backend in ("torch", "onnx"):
        engine = ScoringEngine.load(str(ckpt), device="cpu", backend=backend)
        engine.max_length = 128 + 2
        served = np.concatenate([engine.score(engine.encode(x, DOCS, max_doc_tokens=126)) for x in QUERIES])
        assert np.abs(served - want.numpy()).max() <= 1e-4, backend
