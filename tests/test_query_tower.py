"""Query-tower training of a bi-encoder: the in-batch listwise loss (golden cases and a
cross-check against the per-group listwise loss), the frozen document tower and its learned map
(save/load, the vector cache, scores equal to the plain bi-encoder at step 0), and the step."""

import numpy as np
import pytest
import torch

from zelo_ray.train.losses import inbatch_listwise_loss, listwise_loss
from zelo_ray.train.loop import StepRunner
from zelo_ray.scoring.models import load_reranker, save_reranker, tiny_encoder
from zelo_ray.train.query_tower import batch_matrix

NAN = float("nan")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_encoder(tmp_path_factory.mktemp("qt") / "tiny", hidden=32, layers=1)


def test_inbatch_listwise_golden():
    elo = torch.tensor([[3.0, 0.0, NAN, NAN], [NAN, NAN, 1.0, -1.0]])
    right = torch.tensor([[9.0, 0.0, -9.0, -9.0], [-9.0, -9.0, 9.0, 0.0]])
    wrong = torch.tensor([[0.0, 9.0, 9.0, 0.0], [9.0, 0.0, 0.0, 9.0]])
    assert inbatch_listwise_loss(right, elo) < inbatch_listwise_loss(wrong, elo)
    # another query's document ranked above one's own candidates costs something
    leak = right.clone()
    leak[0, 2] = 20.0
    assert inbatch_listwise_loss(leak, elo) > inbatch_listwise_loss(right, elo)
    with pytest.raises(ValueError, match="at least one"):
        inbatch_listwise_loss(right, torch.tensor([[1.0, NAN, NAN, NAN], [NAN] * 4]))


def test_inbatch_listwise_without_negatives_is_the_group_listwise_loss():
    rng = np.random.default_rng(0)
    s, e = torch.tensor(rng.normal(size=6), dtype=torch.float32), torch.tensor(rng.normal(size=6), dtype=torch.float32)
    a = inbatch_listwise_loss(s[None, :], e[None, :], temperature=1.0)
    b = listwise_loss(s, None, e, torch.zeros(6, dtype=torch.long))
    assert float(a) == pytest.approx(float(b), abs=1e-6)
    # a lower temperature puts the target's mass on the best candidate
    sharp = inbatch_listwise_loss(s[None, :], e[None, :], temperature=0.01)
    best = -torch.log_softmax(s, 0)[int(e.argmax())]
    assert float(sharp) == pytest.approx(float(best), abs=1e-3)


def test_batch_matrix_merges_documents_shared_by_queries():
    batch = {"doc_ids": [["a", "b"], ["b", "c"]], "elo": [[1.0, 0.0], [2.0, -1.0]], "targets": [[0.7, 0.5], [0.9, 0.2]],
             "doc_vectors": [[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.6, 0.8]]]}
    v, elo, t = batch_matrix(batch)
    assert v.shape == (3, 2) and torch.isnan(elo[0, 2]) and torch.isnan(elo[1, 0])
    assert elo[1, 1] == 2.0 and t[0, 1] == pytest.approx(0.5)


def test_frozen_document_tower_scores_like_the_bi_encoder_and_round_trips(tiny, tmp_path):
    plain = load_reranker(tiny, "bi_encoder")
    qt = load_reranker(tiny, "bi_encoder", towers="query")
    assert qt.towers == "query" and not any(p.requires_grad for p in qt.doc_model.parameters())
    qs, ds = ["wing lift", "wing lift", "heat"], ["lift of a wing", "heat flux", "heat flux"]
    # a zero map is the identity: at step 0 the model is the base bi-encoder
    assert torch.allclose(qt.score(qs, ds, max_length=32), plain.score(qs, ds, max_length=32), atol=1e-5)
    with torch.no_grad():
        qt.doc_map.copy_(torch.randn_like(qt.doc_map) * 0.1)
        qt.model.embeddings.word_embeddings.weight.add_(0.01)  # the query tower moved, the document tower did not
    before = qt.score(qs, ds, max_length=32)
    save_reranker(qt, tmp_path / "ckpt", {"train_config": {"max_length": 32}})
    again = load_reranker(str(tmp_path / "ckpt"))
    assert again.towers == "query" and (tmp_path / "ckpt" / "document_encoder" / "config.json").exists()
    assert torch.allclose(again.score(qs, ds, max_length=32), before, atol=1e-5)
    # forward (what the serving engine calls) gives the same logits as the cached scoring path
    enc = again.tokenize(qs, ds, max_length=32)
    with torch.no_grad():
        assert torch.allclose(torch.sigmoid(again(enc)), before, atol=1e-5)


def test_seeded_vectors_are_used_and_only_for_a_frozen_tower(tiny):
    qt = load_reranker(tiny, "bi_encoder", towers="query")
    real = qt.document_vectors(["heat flux"], max_length=32)
    fake = -real
    qt._doc_cache.clear()
    assert qt.seed_document_vectors(["heat flux"], fake.numpy()) == 1
    assert torch.allclose(qt.document_vectors(["heat flux"], max_length=32), fake)
    assert load_reranker(tiny, "bi_encoder").seed_document_vectors(["heat flux"], fake.numpy()) == 0


def test_the_vector_step_learns_which_documents_a_query_prefers(tiny):
    torch.manual_seed(0)
    model = load_reranker(tiny, "bi_encoder", towers="query")
    docs = [f"doc {i}" for i in range(8)]
    vecs = model.document_vectors(docs, max_length=32).numpy()
    queries = ["alpha topic", "beta topic"]
    # alpha prefers docs 0-3 (doc 0 most), beta docs 4-7
    batch = {"query": queries, "doc_ids": [docs[:4], docs[4:]],
             "elo": [[3.0, 1.0, 0.0, -1.0], [3.0, 1.0, 0.0, -1.0]],
             "targets": [[0.9, 0.7, 0.5, 0.3]] * 2, "doc_vectors": [vecs[:4].tolist(), vecs[4:].tolist()]}
    runner = StepRunner(model, loss="inbatch_listwise", lr=3e-3, weight_decay=0.0, warmup_steps=0, total_steps=60,
                        max_length=32, doc_map_lr=3e-2, temperature=0.5)
    model.train()
    losses = [runner.step(batch) for _ in range(60)]
    assert losses[-1] < 0.7 * losses[0], losses[::10]
    s = model.score(["alpha topic"] * 8, docs, max_length=32).numpy()
    assert s[0] > s[4] and s[:4].mean() > s[4:].mean()
    assert float(model.doc_map.detach().abs().sum()) > 0  # the map learned too


def test_the_index_vectors_seed_the_tower_and_the_tuned_query_tower_retrieves(tiny, tmp_path):
    """An index built by the document tower's own model: its vectors are taken (checked by
    re-encoding a few), and retrieval through the map finds each query's document."""
    import lancedb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from zelo_ray.scoring.vectors import retrieve_with, seed_from_index

    model = load_reranker(tiny, "bi_encoder", towers="query")
    titles = ["", "wing", "", "heat"]
    texts = ["lift of a wing", "flutter of panels", "heat flux in jets", "boundary layer heat"]
    pq.write_table(pa.table({"doc_id": [f"d{i}" for i in range(4)], "title": titles, "text": texts}),
                   tmp_path / "corpus.parquet")
    embedded = [f"{t}\n{x}" if t else x for t, x in zip(titles, texts)]  # what the indexer embeds
    vecs = model.document_vectors(embedded, max_length=32).numpy()
    lancedb.connect(str(tmp_path / "dense")).create_table("docs", pa.table({
        "row": pa.array(range(4), pa.int64()), "vector": pa.array(vecs.tolist(), pa.list_(pa.float32(), vecs.shape[1]))}))
    fresh = load_reranker(tiny, "bi_encoder", towers="query")
    assert seed_from_index(fresh, tmp_path / "dense", tmp_path / "corpus.parquet", max_length=32, log=print) == 4
    assert torch.allclose(fresh.document_vectors([embedded[3]], max_length=32), torch.from_numpy(vecs[3:]))
    # another token budget or model is refused: the tower then encodes documents itself
    said = []
    other = load_reranker(tiny_encoder(tmp_path / "other", hidden=32, layers=2), "bi_encoder", towers="query")
    assert seed_from_index(other, tmp_path / "dense", tmp_path / "corpus.parquet", max_length=32, log=said.append) == 0
    assert "another model" in said[0]
    runs = retrieve_with(fresh, tmp_path / "dense", tmp_path / "corpus.parquet", {"q": embedded[2]},
                         {"q": ["d3", "d2"]}, depth=4)
    assert runs["dense"]["q"][0] == "d2" and sorted(runs["dense"]["q"]) == ["d0", "d1", "d2", "d3"]
    assert runs["hybrid"]["q"][0] == "d2"  # first in both lists


def test_fewer_fitting_queries_than_a_step_holds_still_train():
    from zelo_ray.config import TrainConfig
    from zelo_ray.train.query_tower import effective_config
    from zelo_ray.train.trainer import plan_steps

    tcfg = effective_config(TrainConfig())  # the default base is a bi-encoder: query towers
    assert tcfg.towers == "query" and tcfg.batch_size == 32
    assert plan_steps(27, tcfg) == (27, 1, 10)  # cisi: 27 fitting queries, ten epochs of one step
    assert plan_steps(2054, tcfg)[:2] == (32, 64)
    with pytest.raises(ValueError, match="fewer than one batch"):
        plan_steps(1, tcfg.model_copy(update={"num_workers": 2}))
