"""The one place a judge config becomes behaviour: the backend object that answers calls, the
prompt version its cache keys carry, and the checks that must pass before any work is paid for.

Example::

    >>> from zelo_ray.config import SimulatedJudgeConfig
    >>> from zelo_ray.judges.factory import make_judge, prompt_version
    >>> j = SimulatedJudgeConfig(name="sim", kind="simulated", noise_sd=0.0)
    >>> type(make_judge(j)).__name__, prompt_version(j)
    ('SimulatedJudge', 'latent-v1')
"""

from __future__ import annotations

from zelo_ray.config.judges import OpenAIJudgeConfig, SimulatedJudgeConfig, VLLMPairwiseJudgeConfig
from zelo_ray.core.simulate import SIMULATION_VERSION
from zelo_ray.judges.base import JudgeSetupError
from zelo_ray.judges.prompt import PROMPT_VERSION, SLM_PROMPT_VERSION

__all__ = ["JudgeSetupError", "make_judge", "preflight", "prompt_version"]


def make_judge(cfg, limiter=None):
    """The backend that answers ``cfg``'s calls in a judge caller (:class:`~zelo_ray.judges.base.Judge`);
    ``limiter``: the endpoint's limits shared with other callers
    (:class:`~zelo_ray.judges.shared_limits.SharedEndpointLimiter`; None: this process has them
    all). ``vllm_pairwise`` judges do not run in a caller
    (:func:`zelo_ray.judges.vllm_pairwise.vllm_votes` runs them)."""
    if isinstance(cfg, SimulatedJudgeConfig):
        from zelo_ray.judges.simulated import SimulatedJudge

        return SimulatedJudge(cfg.name, cfg.model or "simulated", noise_sd=cfg.noise_sd,
                              uniform_mix=cfg.uniform_mix, position_bias=cfg.position_bias)
    if isinstance(cfg, OpenAIJudgeConfig):
        from zelo_ray.judges.openai_judge import OpenAIJudge

        return OpenAIJudge(cfg, limiter=limiter)
    raise TypeError(f"judge {cfg.name!r}: kind {cfg.kind!r} does not run in a judge caller")


def prompt_version(cfg) -> str:
    """The prompt (or simulation) version hashed into every cache key of ``cfg``'s calls."""
    if isinstance(cfg, SimulatedJudgeConfig):
        return SIMULATION_VERSION
    if isinstance(cfg, VLLMPairwiseJudgeConfig):
        return SLM_PROMPT_VERSION
    return PROMPT_VERSION


def preflight(cfg) -> None:
    """Raise :class:`JudgeSetupError` now if ``cfg`` could not run later: an API key variable that
    is unset, vLLM not installed."""
    if isinstance(cfg, OpenAIJudgeConfig):
        from zelo_ray.judges.openai_judge import read_api_key

        read_api_key(cfg.name, cfg.api_key_env)
    elif isinstance(cfg, VLLMPairwiseJudgeConfig):
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise JudgeSetupError(
                f"judge {cfg.name!r} (kind vllm_pairwise) needs vLLM: install the official wheel on "
                "GPU nodes, or run `bash scripts/setup-vllm.sh` and use .venv-vllm on CPU") from None
