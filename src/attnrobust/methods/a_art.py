"""A-ART (Choudhary et al. 2021): adversarial training plus temporal attention regularisation.

    loss = clean_weight * BCE(f(x), y) + BCE(f(x_adv), y) + reg_weight * D(A(x), A(x_adv))

``x_adv`` is the task's L-inf PGD on BCE in the dequantised feature space (budgets in
YouTube-8M quantisation levels; padded frames and the validity flag are never perturbed).
``A(.)`` is every temporal attention of the model: each encoder layer's self-attention and the
class-wise pooling attention (:mod:`attnrobust.models.video_transformer`).

**The paper's exact regulariser is unknown** (spec/methods.md §4: no code, the PDF was not
available; the form, eps, steps and beta are TODO(pdf)). What is implemented, following the
spec's hypothesis:

* ``D`` compares, for every layer, head (or pooling class) and query frame, the clean and the
  adversarial attention *distribution over the time axis*: ``kl`` = KL(A(x) || A(x_adv)),
  ``l2`` = squared L2 distance of the two weight vectors;
* it is summed over time, averaged over the rows that are distributions (padded query frames
  give all-zero rows and do not count), and averaged over the attention tensors, so each
  layer and the pooling weigh equally whatever their number of heads or classes;
* gradients flow through both the clean and the adversarial attention (as TRADES does);
* the attack maximises BCE only, not the attention divergence.

``D`` is exactly 0 when ``x_adv == x`` and the model is deterministic (eval mode, or no dropout).
Both passes run in train mode, so with dropout ``D`` also penalises the difference that the two
dropout masks make (a consistency term in the manner of R-Drop); the default dropout is small.

On the synthetic video set (272 training videos, 40 epochs, 3 seeds) beta = 1 gave PGD-10 GAP
0.745 at eps 8 against 0.710 without the regulariser; beta = 10 made training collapse (clean
GAP 0.45): the pull towards invariant attention then wins over fitting the labels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from attnrobust.errors import UserError
from attnrobust.methods.base import Batch, Method

_LOG_FLOOR = 1e-8  # keeps log(0) finite; zero-probability frames contribute p * (...) = 0 to KL


@dataclass(frozen=True)
class AArtConfig:
    train_eps: int = 8  # training budget, 8-bit levels (8 = 8 * 4/255 in feature units); separate from attack.eps
    train_steps: int = 5  # PGD steps per training batch
    train_step_size: float = 2.0  # levels per PGD step
    reg_weight: float = 1.0  # beta: weight of the clean-vs-adversarial attention divergence
    reg_form: Literal["kl", "l2"] = "kl"  # divergence over the time axis per layer, head and query
    clean_weight: float = 1.0  # weight of the clean BCE term (0 = adversarial BCE only, as Madry AT)

    def __post_init__(self) -> None:
        if self.train_eps < 0 or self.train_steps < 1 or self.train_step_size <= 0:
            raise ValueError("need train_eps >= 0, train_steps >= 1, train_step_size > 0")
        if self.reg_weight < 0 or self.clean_weight < 0:
            raise ValueError("need reg_weight >= 0 and clean_weight >= 0")


def attention_divergence(clean: list[Tensor], adv: list[Tensor], form: str = "kl") -> Tensor:
    """Mean over attention tensors of the per-row divergence over time (the last axis).

    Each tensor is (..., T) with rows that are distributions over frames or all zero (padded
    queries); only distribution rows are averaged.
    """
    if len(clean) != len(adv) or not clean:
        raise ValueError("need the same, non-empty list of attention tensors for clean and adversarial inputs")
    terms = []
    for p, q in zip(clean, adv):
        if form == "kl":
            per_row = (p * (torch.log(p + _LOG_FLOOR) - torch.log(q + _LOG_FLOOR))).sum(-1)
        elif form == "l2":
            per_row = (p - q).pow(2).sum(-1)
        else:
            raise ValueError(f"unknown divergence form {form!r} (kl or l2)")
        rows = (p.sum(-1) > 0.5).to(per_row.dtype)  # distributions, not zero rows
        terms.append((per_row * rows).sum() / rows.sum().clamp_min(1.0))
    return torch.stack(terms).mean()


def a_art_loss(model, batch: Batch, cfg: AArtConfig, generator) -> Tensor:
    if not hasattr(model, "forward_with_attention"):
        raise UserError(f"method a_art needs a model that exposes its attention (model: video_transformer), "
                        f"not {type(model).__name__}")
    x_adv = batch.task.attack(model, batch.x, batch.y, eps=cfg.train_eps, steps=cfg.train_steps,
                              step_size=cfg.train_step_size, generator=generator)
    clean_logits, clean_attention = model.forward_with_attention(batch.x)
    adv_logits, adv_attention = model.forward_with_attention(x_adv)
    loss = cfg.clean_weight * batch.task.loss(clean_logits, batch.y) + batch.task.loss(adv_logits, batch.y)
    if cfg.reg_weight > 0:
        loss = loss + cfg.reg_weight * attention_divergence(clean_attention, adv_attention, cfg.reg_form)
    return loss


A_ART = Method("a_art", AArtConfig, a_art_loss,
               "adversarial training + clean/adversarial temporal attention regularisation (A-ART)")
