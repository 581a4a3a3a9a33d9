"""RankNet-style pairwise loss (Burges et al., 2005) on the preferences the Elo fit implies.

Within each query group, every ordered pair (i, j) gets the soft label
P(i ≻ j) = σ(elo_i − elo_j) — the Bradley–Terry reading of the fitted scores, which pools all
judged pairs of the query — and the model's P = σ(s_i − s_j) is trained with cross-entropy.

    >>> import torch
    >>> from zelo_ray.train.losses import ranknet_loss
    >>> g = torch.tensor([0, 0])
    >>> good = ranknet_loss(torch.tensor([3.0, -3.0]), None, torch.tensor([3.0, -3.0]), g)
    >>> bad = ranknet_loss(torch.tensor([-3.0, 3.0]), None, torch.tensor([3.0, -3.0]), g)
    >>> bool(good < bad)
    True
"""

import torch
import torch.nn.functional as F


def ranknet_loss(logits: torch.Tensor, targets, elo: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    s, e = logits.float(), elo.float()
    same = group[:, None] == group[None, :]
    off = ~torch.eye(len(s), dtype=torch.bool, device=s.device)
    mask = same & off
    if not mask.any():
        return s.sum() * 0.0
    diff = (s[:, None] - s[None, :])[mask]
    label = torch.sigmoid(e[:, None] - e[None, :])[mask]
    return F.binary_cross_entropy_with_logits(diff, label)
