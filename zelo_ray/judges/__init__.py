"""Pairwise judges: one interface (:class:`zelo_ray.judges.base.Judge`), several backends
(OpenAI-compatible endpoints, the simulated judge), the prompt, the parser, the limits and the
durable vote store."""
