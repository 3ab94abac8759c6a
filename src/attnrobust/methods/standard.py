"""Standard (natural) training: cross-entropy on clean inputs."""
from __future__ import annotations

import torch.nn.functional as F

from attnrobust.methods.base import Batch, Method, NoConfig


def standard_loss(model, batch: Batch, cfg: NoConfig, generator) -> "torch.Tensor":  # noqa: F821
    return F.cross_entropy(model(batch.x), batch.y)


STANDARD = Method("standard", NoConfig, standard_loss, "cross-entropy on clean inputs")
