"""Binary cross-entropy against the soft zELO targets (a pointwise alternative to MSE).

    >>> import torch
    >>> from zelo_ray.train.losses import bce_loss
    >>> round(float(bce_loss(torch.zeros(1), torch.tensor([1.0]), None, None)), 4)
    0.6931
"""

import torch
import torch.nn.functional as F


def bce_loss(logits: torch.Tensor, targets: torch.Tensor, elo, group) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float())
