"""Training losses over a batch of query groups.

Every loss takes ``logits`` (n,), ``targets`` (n,) in [0, 1] (the zELO targets), ``elo`` (n,)
(the calibrated Elo scores) and ``group`` (n,) (index of the query group of each row), and
returns a scalar. ``mse`` is the paper's; the others are there to compare against it.
``inbatch_listwise`` is the matrix loss of query-tower training (a score for every query and
document of the batch), so it is not in ``LOSSES``.
"""

from zelo_ray.train.losses.bce import bce_loss
from zelo_ray.train.losses.inbatch_listwise import inbatch_listwise_loss
from zelo_ray.train.losses.listwise import listwise_loss
from zelo_ray.train.losses.mse import mse_loss
from zelo_ray.train.losses.ranknet import ranknet_loss

LOSSES = {"mse": mse_loss, "bce": bce_loss, "ranknet": ranknet_loss, "listwise": listwise_loss}

__all__ = ["LOSSES", "bce_loss", "inbatch_listwise_loss", "listwise_loss", "mse_loss", "ranknet_loss"]
