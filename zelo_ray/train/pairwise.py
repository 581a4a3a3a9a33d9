"""Distil the judge ensemble into a pairwise small LM: (q, d_A, d_B) → P(A ≻ B), as in zELO §4.

The model is a causal LM read at the next token after the judge prompt of
``zelo_ray.judges.vllm_pairwise`` (same template, same tokenisation): P(A ≻ B) =
softmax over the logits of " A" and " B" = σ(l_A − l_B). Trained with BCE against the ensemble's
soft outcome ``p_a`` (``pair_outcomes.parquet`` of the annotate stage), each pair shown in both
orders so the model cannot learn a position bias. The saved folder is a plain Hugging Face
causal LM + tokenizer, which is what vLLM loads: use it as a ``kind: vllm_pairwise`` judge.

Example (tiny random model, offline)::

    >>> import tempfile
    >>> from zelo_ray.scoring.models import tiny_decoder
    >>> from zelo_ray.train.pairwise import PairwiseLM
    >>> m = PairwiseLM.load(tiny_decoder(tempfile.mkdtemp(), hidden=32, intermediate=64, layers=1, heads=2))
    >>> float(m.prob_first(["q"], ["doc one"], ["doc two"])[0]) > 0
    True
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.nn.functional as F

from zelo_ray.judges.vllm_pairwise import ANSWERS, SLM_PROMPT_VERSION, slm_prompt
from zelo_ray.train.loop import lr_lambda
from zelo_ray.scoring.models import last_token_logits, pad_right, single_token_id
from zelo_ray.scoring.kinds import resolve_base

__all__ = ["PairwiseLM", "agreement", "pair_rows", "train_pairwise"]


class PairwiseLM(torch.nn.Module):
    def __init__(self, model, tokenizer, a_id: int, b_id: int, max_doc_chars: int = 4000):
        super().__init__()
        self.model, self.tokenizer, self.a_id, self.b_id = model, tokenizer, a_id, b_id
        self.max_doc_chars = max_doc_chars

    @classmethod
    def load(cls, path: str, max_doc_chars: int = 4000) -> "PairwiseLM":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve_base(path)
        tok = AutoTokenizer.from_pretrained(path)
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        return cls(model, tok, single_token_id(tok, ANSWERS[0], path), single_token_id(tok, ANSWERS[1], path),
                   max_doc_chars)

    def encode(self, queries, firsts, seconds, max_length: int) -> dict[str, torch.Tensor]:
        return pad_right([self._fit(q, a, b, max_length) for q, a, b in zip(queries, firsts, seconds)],
                         self.tokenizer.pad_token_id)

    def _fit(self, query: str, first: str, second: str, max_length: int) -> list[int]:
        """The prompt's ids within ``max_length``: the documents are shortened (both to the same
        length) so that the query, both documents' beginnings and the question survive; only a
        query too long by itself loses its middle."""
        chars = self.max_doc_chars
        for _ in range(8):
            ids = self.tokenizer(slm_prompt(query, first, second, None, chars))["input_ids"]
            if len(ids) <= max_length or chars == 0:
                break
            chars = max(0, min(chars, max(len(first), len(second))) * max_length // len(ids) - 8)
        if len(ids) <= max_length:
            return ids
        return ids[:max_length // 2] + ids[len(ids) - (max_length - max_length // 2):]

    def logit_first(self, enc) -> torch.Tensor:
        logits = last_token_logits(self.model, enc)
        return logits[:, self.a_id] - logits[:, self.b_id]

    @torch.no_grad()
    def prob_first(self, queries, firsts, seconds, *, max_length: int = 512, batch_size: int = 16) -> torch.Tensor:
        self.eval()
        out = []
        for s in range(0, len(queries), batch_size):
            enc = self.encode(queries[s:s + batch_size], firsts[s:s + batch_size], seconds[s:s + batch_size],
                              max_length)
            out.append(torch.sigmoid(self.logit_first(enc)))
        return torch.cat(out) if out else torch.empty(0)

    def save(self, out: str | Path, card: dict) -> Path:
        out = Path(out)
        self.model.save_pretrained(out, safe_serialization=True)
        self.tokenizer.save_pretrained(out)
        (out / "zelo_card.json").write_text(json.dumps({"kind": "pairwise_slm", "prompt_version": SLM_PROMPT_VERSION,
                                                        **card}, indent=2, default=str))
        return out


def pair_rows(outcomes: pa.Table, queries: dict[str, str], docs: dict[str, str]) -> dict[str, list]:
    """Judged pairs with an ensemble outcome → parallel lists (query, A, B, p_a, query_id)."""
    t = outcomes.filter(pc.is_valid(outcomes["p_a"]))
    return {"query_id": t["query_id"].to_pylist(),
            "query": [queries[q] for q in t["query_id"].to_pylist()],
            "a": [docs[d] for d in t["doc_a"].to_pylist()], "b": [docs[d] for d in t["doc_b"].to_pylist()],
            "p_a": t["p_a"].to_pylist()}


def agreement(p_model: np.ndarray, p_ens: np.ndarray) -> dict:
    """Share of decided pairs (ensemble p ≠ ½) where the model prefers the same document, and log-loss."""
    p_model, p_ens = np.asarray(p_model, float), np.asarray(p_ens, float)
    decided = np.abs(p_ens - 0.5) > 1e-9
    agree = float(np.mean((p_model[decided] > 0.5) == (p_ens[decided] > 0.5))) if decided.any() else float("nan")
    pm = np.clip(p_model, 1e-6, 1 - 1e-6)
    ll = float(-np.mean(p_ens * np.log(pm) + (1 - p_ens) * np.log(1 - pm))) if len(pm) else float("nan")
    return {"pairs": int(len(p_ens)), "decided": int(decided.sum()), "agreement": agree, "log_loss": ll}


def heldout_report(m: "PairwiseLM", rows: dict[str, list], idx: list[int], max_length: int) -> dict:
    """The model on held-out pairs, each asked in both orders: agreement and log-loss with the
    ensemble (the order the pair was stored in), agreement of the order-averaged probability, and
    ``first_shown_share`` — how often the first-shown document wins (0.5: no position bias)."""
    q = [rows["query"][i] for i in idx]
    a, b = [rows["a"][i] for i in idx], [rows["b"][i] for i in idx]
    p_ab = m.prob_first(q, a, b, max_length=max_length).cpu().numpy()
    p_ba = m.prob_first(q, b, a, max_length=max_length).cpu().numpy()
    p_ens = np.array([rows["p_a"][i] for i in idx], float)
    out = agreement(p_ab, p_ens)
    out["agreement_both_orders"] = agreement((p_ab + 1 - p_ba) / 2, p_ens)["agreement"]
    out["first_shown_share"] = float(np.mean(np.r_[p_ab, p_ba] > 0.5)) if len(p_ab) else float("nan")
    return out


def train_pairwise(rows: dict[str, list], *, base: str, out: str | None = None, heldout: float = 0.1,
                   epochs: float = 1.0, batch_size: int = 8, lr: float = 5e-5, max_length: int = 512,
                   seed: int = 0, log=print, device: str = "cpu", measure_before: bool = True) -> dict:
    """Fine-tune ``base`` on ``rows`` (see :func:`pair_rows`); held-out pairs are split by query and
    measured before (``heldout_before``, the undistilled base) and after training (``heldout``)."""
    rng = np.random.default_rng(seed)
    qids = sorted(set(rows["query_id"]))
    held = set(rng.choice(qids, size=max(1, int(round(heldout * len(qids)))), replace=False).tolist()) \
        if heldout and len(qids) > 1 else set()
    idx_tr = [i for i, q in enumerate(rows["query_id"]) if q not in held]
    idx_te = [i for i, q in enumerate(rows["query_id"]) if q in held]
    if not idx_tr:
        raise ValueError("no training pairs (every query held out)")
    torch.manual_seed(seed)
    m = PairwiseLM.load(base).to(device)
    before = heldout_report(m, rows, idx_te, max_length) if idx_te and measure_before else None
    # both orders: (A, B, p) and (B, A, 1 − p)
    q = [rows["query"][i] for i in idx_tr] * 2
    first = [rows["a"][i] for i in idx_tr] + [rows["b"][i] for i in idx_tr]
    second = [rows["b"][i] for i in idx_tr] + [rows["a"][i] for i in idx_tr]
    target = [rows["p_a"][i] for i in idx_tr] + [1 - rows["p_a"][i] for i in idx_tr]
    order = rng.permutation(len(q))
    steps = max(1, int(round(len(order) / batch_size * epochs)))
    opt = torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(int(0.1 * steps), steps))
    m.train()
    t0, losses = time.perf_counter(), []
    for step in range(steps):
        sel = order[(np.arange(batch_size) + step * batch_size) % len(order)]
        enc = {k: v.to(device) for k, v in m.encode([q[i] for i in sel], [first[i] for i in sel],
                                                    [second[i] for i in sel], max_length).items()}
        loss = F.binary_cross_entropy_with_logits(m.logit_first(enc).float(),
                                                  torch.tensor([target[i] for i in sel], device=device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if (step + 1) % 20 == 0 or step + 1 == steps:
            log(f"[pairwise] step {step + 1}/{steps} loss {np.mean(losses[-20:]):.4f}")
    result = {"steps": steps, "train_pairs": len(idx_tr), "heldout_queries": len(held),
              "wall_s": round(time.perf_counter() - t0, 1)}
    if idx_te:
        result["heldout"] = heldout_report(m, rows, idx_te, max_length)
        if before is not None:
            result["heldout_before"] = before
        log(f"[pairwise] held-out agreement with the ensemble: {result['heldout']['agreement']:.3f} "
            + (f"(before training {before['agreement']:.3f}) " if before else "")
            + f"on {result['heldout']['decided']} decided pairs; first-shown wins {result['heldout']['first_shown_share']:.3f}")
    if out:
        m.save(out, {"base": base, **{k: v for k, v in result.items()}})
        result["model"] = str(out)
    return result
