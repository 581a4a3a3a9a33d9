"""Scoring a (query, document) pair with a checkpoint — one owner for training's validation,
evaluation, the audit and serving.

Modules: ``models`` (the scorer classes, loading, saving and the one kind detection), ``lora``,
``fusion`` (the served function: the model's score fused with BM25, and its weight), ``vectors``
(a frozen document tower scoring with the index's vectors; the tuned query tower as retriever),
``scorer`` (batched scoring of query rows, in-process or in a Ray actor pool) and ``rerank``
(reranking a run's candidates).
"""
