"""Stage 4 of zELO: train rerankers on the zELO targets (Ray Train). Scoring with a checkpoint
is :mod:`zelo_ray.scoring`'s; reranking and evaluation are :mod:`zelo_ray.eval`'s.

Modules: ``examples`` (query groups from the zELO table), ``query_tower`` (the default recipe
for a bi-encoder: query encoder and a map on the index's document vectors), ``losses/`` (one per
file), ``validation`` (held-out training queries that pick the checkpoint), ``loop`` (the step,
plain PyTorch), ``worker`` + ``trainer`` (Ray Train), ``plain`` (no-Ray baseline), ``ds_ops``
(DeepSpeed), ``pairwise`` (the pairwise SLM judge), ``stage`` (the training stage on a run
directory, and the served function's BM25 weight).
"""
