"""Evaluation: per-query IR metrics with paired bootstrap CIs (``metrics``, ``evaluate``), the
train/test query split (``splits``), reranking a run's test queries with checkpoints and every
system's table (``rerank``), label-free benchmarking and audits (``labelfree``, ``audit``,
``rerank_endpoint``) and the printed tables (``table``)."""
