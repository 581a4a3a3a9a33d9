"""Serving a trained reranker: Ray Serve behind Cohere- and ZeroEntropy-compatible rerank APIs.

``settings.py`` (the typed ``serve`` config section), ``engine.py`` (tokenise and score, length
aware; no Ray), ``schemas.py`` (request/response models of both APIs), ``service.py`` (validation,
auth and response building; no Ray), ``app.py`` (the Ray Serve deployment with FastAPI ingress
and ``@serve.batch``). Importing this package imports neither Ray nor torch.
"""
