"""Listwise softmax cross-entropy (ListNet top-1, Cao et al., 2007) over each query group.

The target distribution is softmax(elo) over the group's documents — Elo scores are log-odds, so
this is the probability that each document wins against the whole group under Bradley–Terry.

    >>> import torch
    >>> from zelo_ray.train.losses import listwise_loss
    >>> e, g = torch.tensor([2.0, 0.0, -2.0]), torch.zeros(3, dtype=torch.long)
    >>> bool(listwise_loss(e, None, e, g) < listwise_loss(-e, None, e, g))
    True
"""

import torch


def listwise_loss(logits: torch.Tensor, targets, elo: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    s, e = logits.float(), elo.float()
    total = s.new_zeros(())
    groups = torch.unique(group)
    for g in groups:
        m = group == g
        p = torch.softmax(e[m], dim=0)
        total = total - (p * torch.log_softmax(s[m], dim=0)).sum()
    return total / len(groups)
