"""Tokenise (query, document) pairs under a per-document token budget and score them in
length-sorted batches bounded by a token budget (rows × padded length), not by a row count.

No Ray here: the Serve deployment, the benchmarks and the GPU check all call this.

Example::

    >>> import tempfile
    >>> from zelo_ray.scoring.models import tiny_encoder
    >>> engine = ScoringEngine.load(tiny_encoder(tempfile.mkdtemp()), device="cpu")
    >>> pairs = engine.encode("what is lift", ["lift is a force", "a recipe"], max_doc_tokens=64)
    >>> [p.n_tokens for p in pairs]
    [10, 8]
    >>> scores = engine.score(pairs)          # relevance in [0, 1], input order
    >>> bool(((scores >= 0) & (scores <= 1)).all())
    True
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from zelo_ray.scoring.kinds import CARD, detect_kind, resolve_base
from zelo_ray.scoring.models import DECODER_PROMPT, Reranker
from zelo_ray.scoring.onnx_reranker import OnnxReranker, load_scorer

__all__ = ["Pair", "ScoringEngine", "check_servable", "chunk_pairs", "pick_device", "plan_batches"]


@dataclass(frozen=True, slots=True)
class Pair:
    """One tokenised (query, document) pair; ``query_ids`` only for the bi-encoder."""

    ids: tuple[int, ...]
    types: tuple[int, ...] | None = None
    query_ids: tuple[int, ...] | None = None

    @property
    def n_tokens(self) -> int:
        return len(self.ids) + (len(self.query_ids) if self.query_ids else 0)


def check_servable(path: str) -> str:
    """The model kind of a folder, or a ValueError saying why it cannot be served as it is
    (:func:`~zelo_ray.scoring.models.detect_kind` with ``serving=True``)."""
    return detect_kind(resolve_base(path), serving=True)


def plan_batches(lengths: list[int], max_tokens: int, max_rows: int) -> list[list[int]]:
    """Index groups, longest first, each with ``rows × longest ≤ max_tokens`` and ``rows ≤ max_rows``.

    Sorting by length keeps padding small; the padded-token bound keeps a forward pass's memory
    and time steady whatever the mix of short and long documents.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups, cur, longest = [], [], 0
    for i in order:
        longest_if = max(longest, lengths[i])
        if cur and (len(cur) + 1 > max_rows or (len(cur) + 1) * longest_if > max_tokens):
            groups.append(cur)
            cur, longest_if = [], lengths[i]
        cur.append(i)
        longest = longest_if
    if cur:
        groups.append(cur)
    return groups


def chunk_pairs(pairs: list[Pair], max_tokens: int) -> list[list[Pair]]:
    """Consecutive runs of pairs with at most ``max_tokens`` tokens each (a pair is never split)."""
    chunks, cur, n = [], [], 0
    for p in pairs:
        if cur and n + p.n_tokens > max_tokens:
            chunks.append(cur)
            cur, n = [], 0
        cur.append(p)
        n += p.n_tokens
    if cur:
        chunks.append(cur)
    return chunks


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("serve.device=cuda but this replica sees no CUDA device (set serve.num_gpus)")
    return torch.device(device)


def _pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)


class ScoringEngine:
    """A loaded reranker: ``encode`` (tokenise with budgets) and ``score`` (relevance in [0, 1])."""

    def __init__(self, model: Reranker | OnnxReranker, *, device: torch.device, max_query_tokens: int = 128,
                 max_batch_tokens: int = 16384, max_batch_rows: int = 256, path: str = ""):
        self.model, self.device, self.path = model.eval(), device, path
        self.tok = model.tokenizer
        # a fast tokenizer keeps its truncation settings in shared state that every call rewrites:
        # two threads tokenising at once (concurrent requests in one replica) get each other's
        # truncation -- silently wrong lengths, or "Second sequence not provided"
        self._tok_lock = threading.Lock()
        self.kind = model.kind
        self.max_query_tokens = max_query_tokens
        self.max_batch_tokens, self.max_batch_rows = max_batch_tokens, max_batch_rows
        limit = getattr(model.config, "max_position_embeddings", None) or 512
        tok_limit = self.tok.model_max_length if self.tok.model_max_length < 10**6 else limit
        self.max_length = int(min(limit, tok_limit))
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        if self.kind == "decoder_yes":
            head, tail = DECODER_PROMPT.split("{doc}")
            self._tail = tuple(self._tokenize(tail, add_special_tokens=False)["input_ids"])
            self._head_template = head

    def _tokenize(self, *args, **kwargs):
        with self._tok_lock:
            return self.tok(*args, **kwargs)

    @classmethod
    def load(cls, path: str, *, device: str = "auto", dtype: str = "auto", backend: str = "torch",
             where: str = "serve.backend", **kw) -> "ScoringEngine":
        """``backend``: torch, onnx or onnx-int8 (:mod:`zelo_ray.runtime.backend`); an ONNX backend
        exports the folder once (cached beside it) and runs with this process's torch threads."""
        kind = check_servable(path)
        dev = pick_device(device)
        model = load_scorer(path, kind, backend=backend, device=str(dev), dtype=_pick_dtype(dtype, dev),
                            threads=torch.get_num_threads(), where=where)
        engine = cls(model, device=dev, path=str(path), **kw)
        card = Path(resolve_base(path)) / CARD
        trained = json.loads(card.read_text()).get("train_config", {}).get("max_length") if card.exists() else None
        if kind == "bi_encoder" and trained:
            # a bi-encoder cuts query and document to the length it was trained and evaluated
            # with, so the served scores are the measured ones
            engine.max_length = min(engine.max_length, int(trained))
        return engine

    # -- tokenisation ------------------------------------------------------------------------
    def encode(self, query: str, docs: list[str], *, max_doc_tokens: int, keep: str = "start") -> list[Pair]:
        """One Pair per document, the document cut to ``max_doc_tokens`` tokens (and to what the
        model's maximum length leaves after the query). ``keep="end"``: a long document keeps its
        last tokens instead of its first (TEI's ``truncation_direction: Left``)."""
        if keep == "end":
            docs = [self._keep_end(d, max_doc_tokens) for d in docs]
        q = self._tokenize(query, add_special_tokens=False)["input_ids"]
        # the query text as given unless it must be cut: a decode/re-encode round trip can change
        # tokens (punctuation, casing) away from what the model saw in training
        query_text = query
        if len(q) > self.max_query_tokens:
            q = q[:self.max_query_tokens]
            query_text = self.tok.decode(q)
        if self.kind == "cross_encoder":
            budget = min(max_doc_tokens, self.max_length - len(q) - self.tok.num_special_tokens_to_add(pair=True))
            enc = self._tokenize([query_text] * len(docs), docs, truncation="only_second",
                                 max_length=len(q) + max(budget, 1) + self.tok.num_special_tokens_to_add(pair=True))
            types = enc.get("token_type_ids")
            return [Pair(tuple(ids), tuple(types[i]) if types is not None else None)
                    for i, ids in enumerate(enc["input_ids"])]
        if self.kind == "bi_encoder":
            qids = tuple(self._tokenize(query, truncation=True,
                                        max_length=min(self.max_query_tokens + 2, self.max_length))["input_ids"])
            enc = self._tokenize(docs, truncation=True, max_length=min(max_doc_tokens + 2, self.max_length))
            return [Pair(tuple(ids), None, qids) for ids in enc["input_ids"]]
        head = tuple(self._tokenize(self._head_template.format(query=query_text),
                                    add_special_tokens=True)["input_ids"])
        budget = max(1, min(max_doc_tokens, self.max_length - len(head) - len(self._tail)))
        enc = self._tokenize(docs, add_special_tokens=False, truncation=True, max_length=budget)
        return [Pair(head + tuple(ids) + self._tail) for ids in enc["input_ids"]]

    def doc_budget(self, query: str, max_doc_tokens: int) -> int:
        """Tokens of a document that fit in one pair with ``query`` (what ``encode`` keeps)."""
        q = self._tokenize(query, add_special_tokens=False)["input_ids"][:self.max_query_tokens]
        if self.kind == "cross_encoder":
            return max(1, min(max_doc_tokens, self.max_length - len(q) - self.tok.num_special_tokens_to_add(pair=True)))
        if self.kind == "bi_encoder":
            return max(1, min(max_doc_tokens, self.max_length - 2))
        head = self._tokenize(self._head_template.format(query=query), add_special_tokens=True)["input_ids"]
        return max(1, min(max_doc_tokens, self.max_length - len(head) - len(self._tail)))

    def windows(self, query: str, docs: list[str], *, max_doc_tokens: int, overlap: int,
                max_windows: int) -> tuple[list[str], np.ndarray]:
        """Overlapping windows of every document longer than one pair's budget: ``(texts,
        owner)`` where ``owner[i]`` is the document window ``i`` comes from (a short document is
        its own single window). Windows are cut at word boundaries of the original text; with
        more than ``max_windows`` needed, that many are spread evenly over the document."""
        budget = self.doc_budget(query, max_doc_tokens)
        # at most a quarter of a window is shared: a model trained on short inputs has a small
        # budget, where a fixed 64-token overlap would triple the windows
        stride = max(1, budget - min(overlap, budget // 4))
        texts, owner = [], []
        for i, doc in enumerate(docs):
            if not self.tok.is_fast:
                texts.append(doc), owner.append(i)
                continue
            # verbose=False: the whole text is tokenised on purpose (to place the windows)
            offsets = self._tokenize(doc, add_special_tokens=False, return_offsets_mapping=True,
                                     verbose=False)["offset_mapping"]
            n = len(offsets)
            if n <= budget:
                texts.append(doc), owner.append(i)
                continue
            starts = list(range(0, n - budget + stride, stride))
            starts = [min(s, n - budget) for s in starts]
            if len(starts) > max_windows:
                starts = np.linspace(0, n - budget, max_windows).round().astype(int).tolist()
            for s in dict.fromkeys(starts):
                end = s + budget
                # whole words: a window starts at its first word's first token and ends at its
                # last word's last token (encode cuts the few extra tokens; the overlap covers them)
                while s > 0 and offsets[s][0] == offsets[s - 1][1]:
                    s -= 1
                while end < n and offsets[end][0] == offsets[end - 1][1]:
                    end += 1
                texts.append(doc[offsets[s][0]:offsets[end - 1][1]])
                owner.append(i)
        return texts, np.asarray(owner, dtype=np.int64)

    def _keep_end(self, doc: str, n_tokens: int) -> str:
        """The end of ``doc`` holding at most ``n_tokens`` tokens, cut at a token boundary of the
        original text (character offsets, so the kept text is not re-spelled by a decode)."""
        if not self.tok.is_fast:
            ids = self._tokenize(doc, add_special_tokens=False, verbose=False)["input_ids"]
            return doc if len(ids) <= n_tokens else self.tok.decode(ids[-n_tokens:])
        # verbose=False: the whole text is tokenised on purpose (to find where its end starts)
        enc = self._tokenize(doc, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = enc["offset_mapping"]
        if len(offsets) <= n_tokens:
            return doc
        return doc[offsets[-n_tokens][0]:]

    # -- scoring -------------------------------------------------------------------------------
    def _tensors(self, rows: list[Pair]) -> dict[str, torch.Tensor]:
        n = max(len(p.ids) for p in rows)
        ids = torch.full((len(rows), n), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), n), dtype=torch.long)
        types = torch.zeros((len(rows), n), dtype=torch.long) if rows[0].types is not None else None
        for i, p in enumerate(rows):
            ids[i, :len(p.ids)] = torch.tensor(p.ids)
            mask[i, :len(p.ids)] = 1
            if types is not None:
                types[i, :len(p.ids)] = torch.tensor(p.types)
        out = {"input_ids": ids, "attention_mask": mask}
        if types is not None:
            out["token_type_ids"] = types
        return {k: v.to(self.device, non_blocking=True) for k, v in out.items()}

    @torch.inference_mode()
    def score(self, pairs: list[Pair]) -> np.ndarray:
        """Relevance σ(logit) in [0, 1] for each pair, in input order."""
        out = np.empty(len(pairs), np.float32)
        if not pairs:
            return out
        for group in plan_batches([p.n_tokens for p in pairs], self.max_batch_tokens, self.max_batch_rows):
            rows = [pairs[i] for i in group]
            if self.kind == "bi_encoder":
                logits = self._bi_encoder_logits(rows)
            else:
                logits = self.model(self._tensors(rows))
            out[group] = torch.sigmoid(logits.float()).cpu().numpy()
        return out

    def _bi_encoder_logits(self, rows: list[Pair]) -> torch.Tensor:
        queries = list(dict.fromkeys(p.query_ids for p in rows))
        q = self._tensors([Pair(ids) for ids in queries])
        d = self._tensors([Pair(p.ids) for p in rows])
        qe = self.model.embed(q["input_ids"], q["attention_mask"])
        # a checkpoint with a frozen document tower reads documents with that tower and its map
        de = self.model.map_documents(self.model.embed_documents(d["input_ids"], d["attention_mask"]))
        which = torch.tensor([queries.index(p.query_ids) for p in rows], device=self.device)
        return self.model.scale * (qe[which] * de).sum(-1) + self.model.bias

    def info(self) -> dict:
        return {"kind": self.kind, "path": self.path, "device": str(self.device),
                "dtype": self.model.precision, "backend": getattr(self.model, "backend", "torch"),
                "max_length": self.max_length, "torch_threads": torch.get_num_threads()}
