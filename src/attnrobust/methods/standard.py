"""Standard (natural) training: the task's loss on clean inputs (cross-entropy, or BCE for video)."""
from __future__ import annotations

from torch import Tensor

from attnrobust.methods.base import Batch, Method, NoConfig


def standard_loss(model, batch: Batch, cfg: NoConfig, generator) -> Tensor:
    return batch.task.loss(model(batch.x), batch.y)


STANDARD = Method("standard", NoConfig, standard_loss, "the task's loss on clean inputs")
