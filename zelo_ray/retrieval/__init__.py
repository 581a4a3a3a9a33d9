"""First-stage retrieval: Tantivy BM25 + LanceDB dense vectors, fused by RRF, run by Ray Data."""
