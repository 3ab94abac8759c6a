"""A small ResNet for 32-px images: the shared backbone of the image baselines.

Kept small on purpose: the embedded default trains on two CPU cores in minutes. ``width``
scales every stage; real-data profiles raise it. ``crop < 1`` is a control, not a defence: the
trunk sees only the central ``crop`` of each side, resized back to the input size, i.e. a fixed
central crop, the attention that never moves (S3TA's search task must defeat it, issue 16).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from attnrobust.models.layers import BasicBlock, Normalize, conv_bn


class ResNetTrunk(nn.Module):
    """Stride-2 stem + two residual stages; output (B, 4*width, H/4, W/4).

    The stem halves the resolution at once: on CPU this is ~4x cheaper than a full-resolution
    first stage at the same width, which is what makes PGD training fit the default budget.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.out_channels = 4 * width
        self.layers = nn.Sequential(
            conv_bn(3, width, stride=2),
            BasicBlock(width, 2 * width, 1),
            BasicBlock(2 * width, 4 * width, 2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class SmallResNet(nn.Module):
    """Normalise → ResNet trunk → global average pool → linear classifier. Returns logits."""

    def __init__(self, num_classes: int, mean: list[float], std: list[float], width: int = 24,
                 crop: float = 1.0) -> None:
        super().__init__()
        if not 0.0 < crop <= 1.0:
            raise ValueError(f"crop must be in (0, 1], not {crop}")
        self.crop = crop
        self.normalize = Normalize(mean, std)
        self.trunk = ResNetTrunk(width)
        self.head = nn.Linear(self.trunk.out_channels, num_classes)

    def central_crop(self, x: Tensor) -> Tensor:
        """The central ``crop`` of each side, bilinearly resized back to (H, W); ``x`` when crop is 1."""
        if self.crop == 1.0:
            return x
        h, w = x.shape[-2:]
        kh, kw = max(1, round(h * self.crop)), max(1, round(w * self.crop))
        top, left = (h - kh) // 2, (w - kw) // 2
        return F.interpolate(x[..., top:top + kh, left:left + kw], size=(h, w), mode="bilinear", align_corners=False)

    def forward(self, x: Tensor) -> Tensor:  # x: (B, 3, H, W) in [0, 1]
        features = self.trunk(self.normalize(self.central_crop(x)))  # (B, 4w, H/4, W/4)
        return self.head(features.mean(dim=(2, 3)))  # (B, num_classes)
