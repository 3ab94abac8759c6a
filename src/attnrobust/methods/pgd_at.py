"""Madry et al. PGD adversarial training: the task's loss on L-inf PGD examples only.

For video this is the "simple adversarial extension" of Choudhary et al.: PGD in the
dequantised feature space, budgets in YouTube-8M quantisation levels.

The training attack runs with the model in eval mode (BatchNorm running statistics, as the
evaluation attack does) and the loss is then taken in train mode. Every sample takes all
``train_steps`` steps from a uniform random start (no early stop at the first misclassified
iterate), as in Madry et al. With
``train_target: random`` the attack is the random-targeted PGD of Xie et al. (the S3TA
protocol, spec/methods.md §0.1) instead of untargeted PGD.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from attnrobust.attacks.pgd import random_targets
from attnrobust.methods.base import Batch, Method


@dataclass(frozen=True)
class PgdAtConfig:
    train_eps: int = 8  # training budget, 8-bit levels (8 = 8/255); separate from attack.eps
    train_steps: int = 5  # PGD steps per training batch
    train_step_size: float = 2.0  # levels per step
    train_target: Literal["untargeted", "random"] = "untargeted"

    def __post_init__(self) -> None:
        if self.train_eps < 0 or self.train_steps < 1 or self.train_step_size <= 0:
            raise ValueError("need train_eps >= 0, train_steps >= 1, train_step_size > 0")


def pgd_at_loss(model, batch: Batch, cfg: PgdAtConfig, generator):
    targets = None
    if cfg.train_target == "random":
        num_classes = model(batch.x[:1]).shape[1]
        targets = random_targets(batch.y, num_classes, generator)
    x_adv = batch.task.attack(model, batch.x, batch.y, eps=cfg.train_eps, steps=cfg.train_steps,
                              step_size=cfg.train_step_size, targets=targets, generator=generator)
    return batch.task.loss(model(x_adv), batch.y)


PGD_AT = Method("pgd_at", PgdAtConfig, pgd_at_loss, "Madry PGD adversarial training (L-inf)")
