"""Pointwise MSE on the zELO targets — the paper's loss (zELO, arXiv 2509.12541, §4).

    L = mean((σ(R(q, d)) − target)²)

The sigmoid keeps the served score in [0, 1] on the same scale as the targets.

    >>> import torch
    >>> from zelo_ray.train.losses import mse_loss
    >>> float(mse_loss(torch.zeros(2), torch.tensor([0.5, 0.5]), None, None))
    0.0
"""

import torch


def mse_loss(logits: torch.Tensor, targets: torch.Tensor, elo, group) -> torch.Tensor:
    return torch.mean((torch.sigmoid(logits.float()) - targets.float()) ** 2)
