"""Units shared by data, attacks and metrics; imports nothing of the project.

Perturbation budgets: params count 8-bit quantisation levels; attacks take input units.

``eps: 8`` means 8/255 of the pixel range [0, 1] for images, and 8 quantisation steps
(8 * 4/255) of the YouTube-8M feature range [-2, 2] for video features. This is the one
place that converts. Also the YouTube-8M quantisation constants (the video features are
written with them) and the one tolerance that sanity checks and claims share.
"""
from __future__ import annotations

from enum import Enum


class Domain(str, Enum):
    """Input domains the attacks know, each with its value range."""

    IMAGE = "image"  # pixels in [0, 1]
    YT8M = "yt8m"  # dequantised YouTube-8M features in [-2, 2]


# YouTube-8M quantisation (utils.Dequantize): 256 levels over [-2, 2]; dequantised values are
# bin centres plus half a level, so they span [-2 + 4/512, 2 + 4/512], which is the attack's box.
YT8M_MIN, YT8M_MAX = -2.0, 2.0
YT8M_LEVEL = (YT8M_MAX - YT8M_MIN) / 255.0
YT8M_DEQUANT_BIAS = (YT8M_MAX - YT8M_MIN) / 512.0 + YT8M_MIN

_LEVEL = {Domain.IMAGE: 1.0 / 255.0, Domain.YT8M: YT8M_LEVEL}
_BOUNDS = {Domain.IMAGE: (0.0, 1.0), Domain.YT8M: (YT8M_DEQUANT_BIAS, 255 * YT8M_LEVEL + YT8M_DEQUANT_BIAS)}


def levels_to_input(levels: float, domain: Domain | str = Domain.IMAGE) -> float:
    """Convert a budget in 8-bit levels to input units (e.g. ``8 -> 8/255`` for images)."""
    return float(levels) * _LEVEL[Domain(domain)]


def input_bounds(domain: Domain | str = Domain.IMAGE) -> tuple[float, float]:
    """The valid input range of ``domain``; attacks clip to it."""
    return _BOUNDS[Domain(domain)]


def whole_box_levels(domain: Domain | str = Domain.IMAGE) -> int:
    """The budget (in levels) that covers the whole input range: any input is reachable."""
    lo, hi = _BOUNDS[Domain(domain)]
    return int(round((hi - lo) / _LEVEL[Domain(domain)]))


def tolerance(n: int) -> float:
    """max(1 pp, 2 samples): what a few random-start flips on ``n`` samples can move a score.

    Plus 1e-6, so that a difference of exactly 2 samples (0.30 - 0.29 is 0.0100000x in float32)
    counts as within tolerance, as the rule says.
    """
    return max(0.01, 2.0 / max(n, 1)) + 1e-6
