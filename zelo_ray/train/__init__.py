"""Stage 4 of zELO: train rerankers on the zELO targets (Ray Train), rerank, evaluate.

Modules: ``models`` (cross-encoder / "yes"-logit decoder scorers), ``losses/`` (one per file),
``examples`` (training groups), ``splits`` (train/test queries), ``loop`` (the step, plain
PyTorch), ``worker`` + ``trainer`` (Ray Train), ``plain`` (no-Ray baseline), ``rerank``,
``stage`` (run-directory stages), ``pairwise`` (the pairwise SLM), ``refine``, ``tune``.
"""
