"""Input-mask classifiers (Vaishnavi et al., spec/methods.md §2): the classifier sees ``mask ⊙ x``.

The mask travels with each sample as a last input channel, ``x = [rgb, mask]`` (N, 4, H, W), so
attack batching and compaction keep a sample and its mask together. The mask is applied inside
the model, after any perturbation of the image: whatever an attacker adds to the background is
wiped before the classifier sees it (threat model A). The attack's perturbation mask keeps the
mask channel itself fixed (:meth:`attnrobust.tasks.Task.perturb_mask`).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from attnrobust.models.cnn import SmallResNet


def with_mask_channel(images: Tensor, mask: Tensor) -> Tensor:
    """``[images, mask]``: (N, 3, H, W) and (N, 1, H, W) -> (N, 4, H, W)."""
    return torch.cat([images, mask.to(images)], dim=1)


def apply_mask(x: Tensor) -> Tensor:
    """(N, C + 1, H, W) ``[image, mask]`` -> (N, C, H, W) ``image * mask``: zero outside the mask."""
    return x[:, :-1] * x[:, -1:]


class MaskedResNet(SmallResNet):
    """:class:`SmallResNet` on ``image ⊙ mask``; same parameters, so an all-ones mask gives the plain model.

    ``mean``/``std`` normalise the masked image (what the backbone sees), not the raw one.
    """

    takes_mask_channel = True  # x carries its mask as the last channel (checked by tasks.task_for)

    def forward(self, x: Tensor) -> Tensor:  # x: (B, 4, H, W) = [rgb in [0, 1], mask in {0, 1}]
        return super().forward(apply_mask(x))  # (B, num_classes)

    def attention_maps(self, x: Tensor) -> Tensor:
        """The model's attention is its input mask: (B, H, W) in {0, 1}, the same on clean and
        adversarial inputs, since the attack may not change it (threat model A)."""
        return x[:, -1]


def random_box_masks(areas: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """Random masks of matched area: the control that tells "foreground" from "fewer pixels".

    Mask ``i`` has exactly ``areas[i]`` pixels: a box with a log-uniform aspect ratio in [1/2, 2]
    at a uniform position, filled in raster order (so its last row may be partial). A box, not
    a shifted copy of the sample's own mask, so the mask's outline cannot leak the class
    (e.g. a triangular sign). Returns (N, 1, size, size) in {0, 1}.
    """
    out = torch.zeros(len(areas), 1, size, size)
    for i, area in enumerate(int(a) for a in areas.tolist()):
        if area <= 0:
            continue
        ratio = math.exp((2 * float(torch.rand(1, generator=generator)) - 1) * math.log(2))  # width / height
        width = min(size, max(1, round(math.sqrt(area * ratio))))
        height = min(size, -(-area // width))
        width = max(width, -(-area // height))  # height clipped at `size`: widen until the box holds `area`
        top = int(torch.randint(0, size - height + 1, (1,), generator=generator))
        left = int(torch.randint(0, size - width + 1, (1,), generator=generator))
        box = torch.zeros(height * width)
        box[:area] = 1
        out[i, 0, top:top + height, left:left + width] = box.view(height, width)
    return out
