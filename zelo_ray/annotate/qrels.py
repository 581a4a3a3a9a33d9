"""What qrels say about judged pairs: their grades, and the hidden relevance that drives the
simulated judge."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from zelo_ray.core.simulate import latent_from_grades
from zelo_ray.judges.keys import combine, text_hashes, uniforms

__all__ = ["qrels_grades", "qrels_relevance"]


def qrels_grades(qrels: pa.Table):
    """``grades(query_ids, doc_ids)``: the qrels grade of each pair, 0 where unjudged."""
    q = qrels.select(["query_id", "doc_id", "relevance"])

    def grades(query_ids: pa.Array, doc_ids: pa.Array) -> np.ndarray:
        t = pa.table({"_i": np.arange(len(query_ids)), "query_id": query_ids, "doc_id": doc_ids})
        j = t.join(q, keys=["query_id", "doc_id"], join_type="left outer").sort_by("_i")
        return j["relevance"].fill_null(0).to_numpy(zero_copy_only=False).astype(np.float64)
    return grades


def qrels_relevance(qrels: pa.Table):
    """Hidden relevance for the simulated judge: the qrels grade (0 where unjudged) mapped onto the
    judge noise model's latent scale (:func:`zelo_ray.core.simulate.latent_from_grades`), with a fixed
    within-grade spread drawn from a hash of (query id, document id)."""
    grades = qrels_grades(qrels)
    max_grade = float(pc.max(qrels["relevance"]).as_py() or 0.0)

    def relevance(query_ids: pa.Array, doc_ids: pa.Array) -> np.ndarray:
        key = combine(text_hashes(pc.cast(query_ids, pa.string()).to_pylist()),
                      text_hashes(pc.cast(doc_ids, pa.string()).to_pylist()))
        z = np.sqrt(-2.0 * np.log(uniforms(key, 11))) * np.cos(2.0 * np.pi * uniforms(key, 12))
        return latent_from_grades(grades(query_ids, doc_ids), max_grade, z)
    return relevance
