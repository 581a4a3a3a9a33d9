"""The simulated judge behind the same interface as an LLM endpoint (tests, demos, benchmarks).

It applies the measured noise model of :mod:`zelo_ray.core.simulate` to hidden relevance supplied
per call (the pipeline uses qrels gains), with the randomness derived from the call's cache key:
asking the same call twice gives the same answer, as a cached LLM reply would. Every vote it
produces belongs to a run labelled SIMULATION.

Example::

    >>> import asyncio, numpy as np
    >>> from zelo_ray.judges.base import CallBatch
    >>> from zelo_ray.judges.simulated import SimulatedJudge
    >>> j = SimulatedJudge("sim", noise_sd=0.0, uniform_mix=0.0)
    >>> calls = CallBatch(key=np.array([1, 2]), texts=None, first_rel=np.array([3.0, 0.0]),
    ...                   second_rel=np.array([0.0, 3.0]))
    >>> asyncio.run(j.judge_batch(calls)).score.round(2).tolist()
    [-0.91, 0.91]
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from zelo_ray.judges.base import CallBatch, ResultBatch
from zelo_ray.judges.keys import uniforms

__all__ = ["SimulatedJudge"]


class SimulatedJudge:
    def __init__(self, name: str, model: str = "simulated", *, noise_sd: float = 0.2,
                 uniform_mix: float = 0.02, position_bias: float = 0.0) -> None:
        self.name, self.model = name, model
        self.noise_sd, self.uniform_mix, self.position_bias = noise_sd, uniform_mix, position_bias

    async def judge_batch(self, calls: CallBatch, on_answer=None) -> ResultBatch:
        # answers come all at once, at no cost: the caller stores the batch as a whole
        if calls.first_rel is None or calls.second_rel is None:
            raise ValueError(f"simulated judge {self.name!r} needs hidden relevance per call")
        key = np.asarray(calls.key, dtype=np.int64)
        u1, u2 = uniforms(key, 1), uniforms(key, 2)
        noise = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2) * self.noise_sd
        logit = calls.first_rel - calls.second_rel + self.position_bias + noise
        p_first = np.where(uniforms(key, 3) < self.uniform_mix, uniforms(key, 4), expit(logit))
        out = ResultBatch.empty(len(key))
        out.score = 1.0 - 2.0 * p_first
        out.attempts[:] = 1
        return out

    async def aclose(self) -> None:
        return None
