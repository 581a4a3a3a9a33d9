"""Which queries train and which test: a collection's own ``train`` split when it has one, else a
seeded split of the judged queries (pure: ids in, ids out)."""

from __future__ import annotations

import hashlib

__all__ = ["query_split", "seeded_split", "split_queries", "training_qrels_split"]


def seeded_split(query_ids: list[str], test_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, test), decided per query by a hash of (seed, id) — stable when queries are added."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    train, test = [], []
    for q in sorted(set(query_ids)):
        h = int.from_bytes(hashlib.blake2b(f"{seed}\x1f{q}".encode(), digest_size=8).digest(), "little")
        (test if h / 2**64 < test_fraction else train).append(q)
    return train, test


def split_queries(col, *, test_split: str, train_split: str | None, test_fraction: float, seed: int,
                  max_train_queries: int | None = None) -> dict:
    """``{"train": [...], "test": [...], "source": ...}`` for a prepared collection.

    Test queries are always judged queries of ``test_split``; training queries never overlap them.
    A collection without any qrels trains on every query and has no test queries.
    """
    from zelo_ray.eval.metrics import judged_queries

    splits = col.splits
    if not splits:
        # a corpus and queries, no labels (the common case for a private collection): every query
        # trains the reranker; there is nothing to evaluate against
        import pyarrow.parquet as pq

        train = sorted(set(pq.read_table(col.queries_path, columns=["query_id"])["query_id"].to_pylist()))
        return {"train": train[:max_train_queries] if max_train_queries else train, "test": [],
                "source": "no qrels: every query is a training query, none is held out for evaluation"}
    if test_split not in splits:
        raise ValueError(f"{col.root}: no qrels split {test_split!r} (have {splits})")
    test_judged = judged_queries(col.qrels(test_split))
    train_split = _training_split(splits, test_split, train_split)
    if train_split != test_split:
        if train_split not in splits:
            raise ValueError(f"{col.root}: no qrels split {train_split!r} (have {splits})")
        train = sorted(set(judged_queries(col.qrels(train_split))) - set(test_judged))
        test, source = test_judged, f"qrels splits {train_split!r} / {test_split!r}"
    else:
        train, test = seeded_split(test_judged, test_fraction, seed)
        source = f"seeded split (seed {seed}, test fraction {test_fraction}) of qrels/{test_split}"
    if max_train_queries is not None:
        train = train[:max_train_queries]
    if not train or not test:
        raise ValueError(f"{col.root}: the query split leaves {len(train)} training and {len(test)} test "
                         "queries; both need at least one")
    return {"train": train, "test": test, "source": source}


def _training_split(splits, test_split: str, train_split: str | None) -> str:
    """The qrels split whose judged queries train: ``train_split``, else the collection's 'train'
    split when it has one (and tests on another), else the test split (then a seeded share of its
    judged queries trains)."""
    if train_split is not None:
        return train_split
    return "train" if "train" in (splits or ()) and test_split != "train" else test_split


def training_qrels_split(cfg, col) -> str:
    """The qrels split that labels the run's training queries — the one :func:`query_split` took
    them from. Whatever reads the training queries' qrels (the simulated judges, the binary-qrels
    baseline, refinement, Tune) asks here: ``split.train_split or data.split`` missed a
    collection's own 'train' split and gave the simulated judges no labels at all."""
    return _training_split(col.splits, cfg.data.split, cfg.split.train_split)


def query_split(cfg, col) -> dict:
    """The run's train/test queries, as ``split.*`` and ``data.split`` say (:func:`split_queries`)."""
    s = cfg.split
    return split_queries(col, test_split=cfg.data.split, train_split=s.train_split, test_fraction=s.test_fraction,
                         seed=s.seed, max_train_queries=s.max_train_queries)
