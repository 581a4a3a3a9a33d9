"""Listwise softmax cross-entropy against the zELO scores, with in-batch negatives.

ListNet's top-1 loss (Cao et al., "Learning to Rank: From Pairwise Approach to Listwise
Approach", ICML 2007) over *every document of the batch*, as dense retrievers are trained with
in-batch negatives (Karpukhin et al., "Dense Passage Retrieval", EMNLP 2020): each query's target
distribution is softmax(elo / τ) over its own judged candidates and 0 on the other queries'
documents, which it should rank below its own. Elo scores are log-odds, so softmax(elo) is the
probability that a document beats the whole list under Bradley–Terry; τ < 1 sharpens it toward
the few documents the judges clearly prefer (on NFCorpus τ = 1 spread most of the mass over ~80
near-tied candidates and the model barely moved; docs/training.md).

It needs a score for every (query, document) pair of the batch, which a bi-encoder gives for
the price of one encoding per query and per document; ``scores`` is that matrix.

    >>> import torch
    >>> from zelo_ray.train.losses import inbatch_listwise_loss
    >>> elo = torch.tensor([[2.0, 0.0, float("nan")], [float("nan"), float("nan"), 1.0]])
    >>> good = torch.tensor([[5.0, 0.0, -5.0], [-5.0, -5.0, 5.0]])
    >>> bool(inbatch_listwise_loss(good, elo) < inbatch_listwise_loss(-good, elo))
    True
"""

import torch


def inbatch_listwise_loss(scores: torch.Tensor, elo: torch.Tensor, temperature: float = 0.3) -> torch.Tensor:
    """``scores``: (queries, documents) logits; ``elo``: the same shape, each query's calibrated Elo
    on its own candidates and NaN elsewhere (those are its negatives). A query without any
    candidate would have no target and raises."""
    own = ~torch.isnan(elo)
    if not bool(own.any(dim=1).all()):
        raise ValueError("every query of the batch needs at least one of its own candidates")
    target = torch.softmax(torch.where(own, elo / temperature, torch.full_like(elo, float("-inf"))), dim=1)
    return -(target * torch.log_softmax(scores.float(), dim=1)).sum(dim=1).mean()
