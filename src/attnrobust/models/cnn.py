"""A small ResNet for 32-px images: the shared backbone of the image baselines.

Kept small on purpose: the embedded default trains on two CPU cores in minutes. ``width``
scales every stage; real-data profiles raise it.
"""
from __future__ import annotations

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

    def __init__(self, num_classes: int, mean: list[float], std: list[float], width: int = 24) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.trunk = ResNetTrunk(width)
        self.head = nn.Linear(self.trunk.out_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:  # x: (B, 3, H, W) in [0, 1]
        features = self.trunk(self.normalize(x))  # (B, 4w, H/4, W/4)
        return self.head(features.mean(dim=(2, 3)))  # (B, num_classes)
