"""How a model folder runs: PyTorch, or ONNX Runtime (fp32 or int8) from an export made once and
cached beside the folder.

Below the stages that run models (the dense indexer in ``retrieval``, scoring in ``scoring``,
and through it evaluation, the audit and serving), so each of them picks its backend the same
way. Modules: ``backend`` (the names and the rule for choosing), ``export`` (the ONNX graphs: a
one-logit head, or pooled unit embeddings; int8 dynamic quantisation; the cache) and ``session``
(an ONNX Runtime session fed with token arrays) and ``tokens`` (texts → ids from the folder's
``tokenizer.json``, without importing transformers).
"""
