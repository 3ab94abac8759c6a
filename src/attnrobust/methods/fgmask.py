"""Foreground attention masks (Vaishnavi et al., "Can Attention Masks Improve Adversarial
Robustness?", spec/methods.md §2): the classifier sees ``mask ⊙ x``, natural or PGD-trained.

The objective is the ``standard`` or ``pgd_at`` one; what changes is the input. An ``fgmask``
experiment trains on ``[rgb, mask]`` inputs (:func:`attnrobust.tasks.task_for` picks the task
from ``mask``) with a model that applies the mask itself (``model: masked_cnn``):

* ``mask: foreground``: oracle masks from the annotations, at training and at test time;
* ``mask: random``: the control, a random box of the same area per sample (fixed per split), so
  "it sees the foreground" can be told apart from "it sees fewer pixels";
* ``mask: only``: the floor, the oracle mask and no pixels (the rgb channels are copies of the
  mask). What it gets right the mask's outline alone decides, and in threat model A no attack
  can change it: a mask model's robust accuracy is worth what it adds over this floor.

Training-time PGD perturbs the image, never the mask channel; the model then wipes the
background perturbation (threat model A, the mask is part of the model).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from attnrobust.methods.base import Batch, Method
from attnrobust.methods.pgd_at import PgdAtConfig, pgd_at_loss
from attnrobust.methods.standard import standard_loss


@dataclass(frozen=True)
class FgMaskConfig(PgdAtConfig):
    """``train_*`` keys as in ``pgd_at``; they are used only with ``adversarial: true``."""

    mask: Literal["foreground", "random", "only"] = "foreground"  # oracle foreground | random of matched area | the mask alone
    adversarial: bool = False  # false: natural training; true: Madry PGD-AT on the masked model


def fgmask_loss(model, batch: Batch, cfg: FgMaskConfig, generator):
    if cfg.adversarial:
        return pgd_at_loss(model, batch, cfg, generator)
    return standard_loss(model, batch, cfg, generator)


FGMASK = Method("fgmask", FgMaskConfig, fgmask_loss,
                "input attention masks (mask ⊙ x inside the model), natural or PGD adversarial training")
