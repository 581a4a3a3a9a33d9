"""The training step, in plain PyTorch — shared by the Ray Train workers, the single-process
baseline of the throughput benchmark and the GPU check script (no Ray, no I/O here)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping

import numpy as np
import torch

from zelo_ray.train.losses import LOSSES

__all__ = ["StepRunner", "flatten_groups", "group_batches", "lr_lambda"]


def flatten_groups(batch: Mapping[str, Iterable]) -> tuple[list[str], list[str], torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of query groups → parallel lists of (query, doc) rows + targets, elo, group index."""
    queries, docs, targets, elo, group = [], [], [], [], []
    for g, (q, ds, ts, es) in enumerate(zip(batch["query"], batch["docs"], batch["targets"], batch["elo"])):
        ds = list(ds)
        queries.extend([str(q)] * len(ds))
        docs.extend(str(d) for d in ds)
        targets.extend(float(t) for t in ts)
        elo.extend(float(e) for e in es)
        group.extend([g] * len(ds))
    return (queries, docs, torch.tensor(targets), torch.tensor(elo), torch.tensor(group, dtype=torch.long))


def group_batches(table, groups_per_batch: int, *, drop_last: bool = True):
    """Yield column dicts of ``groups_per_batch`` rows from an Arrow table (the non-Ray path)."""
    n = table.num_rows - (table.num_rows % groups_per_batch if drop_last else 0)
    for s in range(0, n, groups_per_batch):
        yield table.slice(s, groups_per_batch).to_pydict()


def lr_lambda(warmup: int, total: int):
    """Linear warm-up then linear decay to 0 (the usual fine-tuning schedule)."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


class StepRunner:
    """Owns the optimiser and schedule; ``step(batch)`` does forward, loss, backward, update.

    With a DeepSpeed ``engine`` the engine does backward/step (ZeRO shards optimiser state);
    otherwise AdamW + gradient clipping, with bf16 autocast when ``precision='bf16'``.
    """

    def __init__(self, model, *, loss: str, lr: float, weight_decay: float, warmup_steps: int,
                 total_steps: int, max_length: int, grad_clip: float = 1.0, precision: str = "fp32",
                 device: str | torch.device = "cpu", engine=None, doc_map_lr: float | None = None,
                 temperature: float = 0.3):
        if loss not in LOSSES and loss != "inbatch_listwise":
            raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(LOSSES)} or inbatch_listwise")
        self.loss_name, self.temperature = loss, temperature
        self.model, self.engine = model, engine
        self.loss_fn, self.max_length, self.grad_clip = LOSSES.get(loss), max_length, grad_clip
        self.device = torch.device(device)
        self.autocast = precision == "bf16"
        self.scorer = _unwrap(model)
        if engine is None:
            # the bi-encoder's two-number head (scale, bias) starts from a guess: let it move 100× faster
            head = [p for n, p in model.named_parameters() if n.split(".")[-1] in ("scale", "bias")
                    and p.dim() == 0 and p.requires_grad]
            # the map on frozen document vectors starts at 0 and has its own rate (query_tower)
            dmap = [p for n, p in model.named_parameters() if n.split(".")[-1] == "doc_map" and p.requires_grad]
            ids = {id(p) for p in head + dmap}
            body = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
            groups = [{"params": body}] + ([{"params": head, "lr": lr * 100, "weight_decay": 0.0}] if head else [])
            groups += [{"params": dmap, "lr": doc_map_lr if doc_map_lr is not None else lr, "weight_decay": 0.0}] if dmap else []
            self.optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(warmup_steps, total_steps))
        else:
            self.optimizer, self.scheduler = engine.optimizer, engine.lr_scheduler
        self.samples = 0

    def step(self, batch: Mapping) -> float:
        if "doc_vectors" in batch:
            return self._vector_step(batch)
        queries, docs, targets, elo, group = flatten_groups(batch)
        enc = {k: v.to(self.device) for k, v in self.scorer.tokenize(queries, docs, self.max_length).items()}
        targets, elo, group = targets.to(self.device), elo.to(self.device), group.to(self.device)
        fwd = self.engine if self.engine is not None else self.model
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            logits = fwd(enc)
        loss = self.loss_fn(logits.float(), targets, elo, group)
        self._update(loss)
        self.samples += len(docs)
        return float(loss.detach())

    def _vector_step(self, batch: Mapping) -> float:
        """Query-tower step: the batch's queries against every document of the batch (their
        vectors come with the rows; ``train/query_tower.py``)."""
        from zelo_ray.train.losses import inbatch_listwise_loss
        from zelo_ray.train.query_tower import batch_matrix

        vectors, elo, targets = batch_matrix(batch)
        q = self.scorer.tokenizer([str(x) for x in batch["query"]], truncation=True, max_length=self.max_length,
                                  padding=True, return_tensors="pt")
        enc = {"q_input_ids": q["input_ids"].to(self.device), "q_attention_mask": q["attention_mask"].to(self.device),
               "d_vectors": vectors.to(self.device)}
        fwd = self.engine if self.engine is not None else self.model
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            logits = fwd(enc).float()
        elo, targets = elo.to(self.device), targets.to(self.device)
        if self.loss_name == "inbatch_listwise":
            loss = inbatch_listwise_loss(logits, elo, self.temperature)
        else:  # pointwise on each query's own candidates (mse: the paper's)
            own = ~torch.isnan(targets)
            loss = self.loss_fn(logits[own], targets[own], elo[own], torch.zeros(int(own.sum()), dtype=torch.long))
        self._update(loss)
        self.samples += int((~torch.isnan(elo)).sum())
        return float(loss.detach())

    def _update(self, loss: torch.Tensor) -> None:
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"loss is {float(loss.detach())} (lr too high, or bad targets)")
        if self.engine is not None:
            self.engine.backward(loss)
            self.engine.step()
        else:
            loss.backward()
            if self.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


def _unwrap(model):
    while hasattr(model, "module"):
        model = model.module
    return model


class Meter:
    """Running loss and throughput between log lines."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.t0, self.n, self.losses = time.perf_counter(), 0, []

    def add(self, loss: float, samples: int):
        self.losses.append(loss)
        self.n += samples

    def summary(self) -> dict:
        dt = max(time.perf_counter() - self.t0, 1e-9)
        return {"loss": float(np.mean(self.losses)) if self.losses else math.nan,
                "samples_per_s": self.n / dt}
