"""Image-quality corruptions (ImageNet-C style): Gaussian noise, Gaussian blur, JPEG.

They play two parts in ``iqa_kd``: drawn at random on the training split, they are the
detector's positive examples (it never sees an adversarial example); one family and severity at
a time on the test split, they are evaluation conditions of their own, since Feng & Cai flag
poor-quality inputs as well as adversarial ones.

Every corruption maps an (N, 3, H, W) batch in [0, 1] to the same shape and range, and is
deterministic given its ``generator``. Severities are in each family's own unit:

* ``gaussian_noise``: standard deviation of additive noise, in [0, 1] pixel units;
* ``gaussian_blur``: standard deviation of the blur kernel, in pixels;
* ``jpeg``: JPEG quality (1..100; lower is worse), through Pillow on 8-bit images.
"""
from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

Corruption = Callable[[Tensor, float, torch.Generator], Tensor]


def gaussian_noise(x: Tensor, std: float, generator: torch.Generator) -> Tensor:
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return (x + std * noise).clamp(0, 1)


def gaussian_blur(x: Tensor, sigma: float, generator: torch.Generator) -> Tensor:
    """Separable Gaussian blur, radius ``ceil(3 sigma)``, reflect-padded borders."""
    radius = max(1, math.ceil(3 * sigma))
    r = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    k = (k / k.sum()).to(x.dtype).to(x.device)
    c = x.shape[1]
    out = F.pad(x, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c).clamp(0, 1)


def jpeg(x: Tensor, quality: float, generator: torch.Generator) -> Tensor:
    """Encode and decode each image as JPEG at ``quality`` (8-bit RGB, Pillow's libjpeg, 4:2:0)."""
    q = int(round(quality))
    images = (x.detach().cpu() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (N, H, W, 3)
    decoded = []
    for img in images:
        buffer = io.BytesIO()
        Image.fromarray(img).save(buffer, format="JPEG", quality=q)
        decoded.append(np.asarray(Image.open(buffer).convert("RGB")))
    return torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).to(x.dtype).div(255).to(x.device)


CORRUPTIONS: dict[str, Corruption] = {"gaussian_noise": gaussian_noise, "gaussian_blur": gaussian_blur, "jpeg": jpeg}
VALID = {  # family -> (lowest, highest) meaningful severity, checked when params are read
    "gaussian_noise": (0.0, 1.0),
    "gaussian_blur": (0.1, 8.0),
    "jpeg": (1.0, 100.0),
}


def corrupt(x: Tensor, family: str, severity: float, generator: torch.Generator) -> Tensor:
    return CORRUPTIONS[family](x, severity, generator)


def random_corruptions(x: Tensor, corruptions: dict[str, list[float]], copies: int,
                       generator: torch.Generator) -> tuple[Tensor, list[tuple[str, float]]]:
    """``copies`` degraded versions of every image, each with a family and severity drawn
    uniformly from ``corruptions``: ((copies * N, 3, H, W), the (family, severity) of each row).
    Rows are grouped by condition for speed, then put back in draw order."""
    conditions = [(family, float(s)) for family, severities in corruptions.items() for s in severities]
    n = len(x)
    draws = torch.randint(len(conditions), (copies * n,), generator=generator)
    out = torch.empty((copies * n, *x.shape[1:]), dtype=x.dtype)
    for c, (family, severity) in enumerate(conditions):
        rows = (draws == c).nonzero().flatten()
        if len(rows):
            out[rows] = corrupt(x[rows % n], family, severity, generator)
    return out, [conditions[int(c)] for c in draws]
