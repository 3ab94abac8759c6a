"""No-reference natural-scene-statistics (NSS) features, BRISQUE-style, in differentiable torch.

Mittal, Moorthy & Bovik (2012), BRISQUE: natural images, once locally normalised, have
coefficients whose distribution is close to a generalised Gaussian; noise, blur, compression
and adversarial perturbations bend that shape in characteristic ways. Feng & Cai build their
quality signal on such features. Per scale (the image and its half-resolution version):

* MSCN coefficients ``(I - mu) / (sigma + C)``, with ``mu``/``sigma`` the local mean and
  standard deviation under a 7x7 Gaussian window (sigma 7/6) and ``C = 1/255`` (BRISQUE's
  ``C = 1`` on the 0..255 scale);
* a generalised Gaussian (GGD) fit of the MSCN coefficients: shape and variance (2 numbers);
* for each of four neighbour orientations (horizontal, vertical, both diagonals), an asymmetric
  GGD (AGGD) fit of the products of neighbouring coefficients: shape, mean, left and right
  variance (16 numbers).

That is 18 features per scale, 36 in all, computed on the luminance (BT.601) of an (N, 3, H, W)
batch in [0, 1]. No pretrained weights are involved.

The fits are BRISQUE's moment matching. The shape ``alpha`` solves
``r(alpha) = Gamma(1/alpha) Gamma(3/alpha) / Gamma(2/alpha)^2 = rho`` for the moment ratio
``rho``; BRISQUE looks the root up on the grid alpha = 0.2, 0.201, ..., 10 (argmin). Here the
same grid is inverted by *linear interpolation*, so the shape is a differentiable function of
the moments (an argmin would have zero gradient almost everywhere and mask the adaptive
attack); on the grid both agree, between grid points they differ by less than the grid step.

Deliberate differences from the MATLAB reference, because images here are small (32 px):
borders are reflect-padded for the local moments (so a constant image has MSCN exactly 0
everywhere), neighbour products use only in-image pairs (no wrap-around ``circshift``), and the
half scale is a 2x2 box average instead of antialiased bicubic ``imresize``.

Degenerate inputs: a constant image has all-zero MSCN coefficients, so every variance and mean
feature is 0 and the moment ratios are 0/0. A tiny ``EPS`` added to numerator and denominator
makes such a ratio 1, the limit of ``|x|`` constant (a two-point distribution +-c as c -> 0), so
every shape is the top of the grid (10), finite, instead of NaN.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

C = 1.0 / 255.0  # MSCN stabiliser in [0, 1] pixel units
EPS = 1e-12  # keeps moment ratios and square roots finite (and differentiable) on flat images
WINDOW, WINDOW_SIGMA = 7, 7.0 / 6.0
SHAPE_GRID = (0.2, 10.0, 0.001)  # BRISQUE's lookup grid for the (A)GGD shape
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601
ORIENTATIONS = ("h", "v", "d1", "d2")
SCALES = 2
FEATURE_NAMES = tuple(
    name
    for s in range(1, SCALES + 1)
    for name in (f"s{s}_mscn_shape", f"s{s}_mscn_var",
                 *(f"s{s}_{o}_{p}" for o in ORIENTATIONS for p in ("shape", "mean", "left_var", "right_var")))
)


def luminance(x: Tensor) -> Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> (N, 1, H, W) luma; a 1-channel batch is returned as is."""
    if x.shape[1] == 1:
        return x
    weights = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def _gaussian_window(dtype: torch.dtype, device) -> Tensor:
    r = torch.arange(WINDOW, dtype=torch.float64) - (WINDOW - 1) / 2
    g = torch.exp(-(r ** 2) / (2 * WINDOW_SIGMA ** 2))
    w = torch.outer(g, g)
    return (w / w.sum()).to(dtype=dtype, device=device).view(1, 1, WINDOW, WINDOW)


def mscn(gray: Tensor) -> Tensor:
    """Mean-subtracted contrast-normalised coefficients of (N, 1, H, W) images in [0, 1]."""
    if min(gray.shape[-2:]) <= WINDOW // 2:
        raise ValueError(f"images must be larger than {WINDOW // 2} px per side for NSS features")
    w = _gaussian_window(gray.dtype, gray.device)
    pad = WINDOW // 2
    gray = gray - gray.mean(dim=(-2, -1), keepdim=True)  # MSCN is shift-invariant; a flat image becomes exactly 0
    mu = F.conv2d(F.pad(gray, (pad,) * 4, mode="reflect"), w)
    second = F.conv2d(F.pad(gray * gray, (pad,) * 4, mode="reflect"), w)
    sigma = torch.sqrt((second - mu * mu).clamp_min(0) + EPS)
    return (gray - mu) / (sigma + C)


@lru_cache(maxsize=None)
def _ratio_table() -> tuple[Tensor, Tensor]:
    """(rho ascending, alpha) for r(alpha) = G(1/a) G(3/a) / G(2/a)^2 on BRISQUE's grid (float64).

    r is strictly decreasing in alpha (2 at the Laplacian, pi/2 at the Gaussian, -> 4/3 as the
    distribution becomes uniform), so the reversed table is ascending and invertible.
    """
    lo, hi, step = SHAPE_GRID
    alpha = torch.arange(round((hi - lo) / step) + 1, dtype=torch.float64) * step + lo
    lg = torch.special.gammaln
    rho = torch.exp(lg(1 / alpha) + lg(3 / alpha) - 2 * lg(2 / alpha))
    return rho.flip(0).contiguous(), alpha.flip(0).contiguous()


def shape_from_ratio(rho: Tensor) -> Tensor:
    """Invert ``r(alpha) = rho`` by linear interpolation on BRISQUE's grid; differentiable in ``rho``.

    Ratios outside the grid's range are clamped to it (shape 0.2 or 10), as BRISQUE's argmin does.
    """
    table_rho, table_alpha = (t.to(rho.device) for t in _ratio_table())
    r = rho.to(torch.float64).clamp(float(table_rho[0]), float(table_rho[-1]))
    i = torch.searchsorted(table_rho, r.detach()).clamp(1, len(table_rho) - 1)
    r0, r1 = table_rho[i - 1], table_rho[i]
    a0, a1 = table_alpha[i - 1], table_alpha[i]
    return (a0 + (a1 - a0) * (r - r0) / (r1 - r0)).to(rho.dtype)


def ggd_fit(x: Tensor) -> tuple[Tensor, Tensor]:
    """Generalised Gaussian fit of each row of (N, P) samples: (shape, variance), each (N,)."""
    var = (x * x).mean(1)
    mean_abs = x.abs().mean(1)
    return shape_from_ratio((var + EPS) / (mean_abs * mean_abs + EPS)), var


def aggd_fit(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Asymmetric generalised Gaussian fit of each row of (N, P) samples (BRISQUE's
    ``estimateaggdparam``): (shape, mean, left variance, right variance), each (N,)."""
    neg, pos = (x < 0).to(x.dtype), (x > 0).to(x.dtype)
    left_var = (x * x * neg).sum(1) / (neg.sum(1) + EPS)
    right_var = (x * x * pos).sum(1) / (pos.sum(1) + EPS)
    left_std, right_std = torch.sqrt(left_var + EPS), torch.sqrt(right_var + EPS)
    gamma_hat = left_std / right_std
    mean_abs = x.abs().mean(1)
    r_hat = (mean_abs * mean_abs + EPS) / ((x * x).mean(1) + EPS)
    r_hat_norm = r_hat * (gamma_hat ** 3 + 1) * (gamma_hat + 1) / (gamma_hat ** 2 + 1) ** 2
    shape = shape_from_ratio(1.0 / r_hat_norm)  # BRISQUE's table is 1/r(alpha) here
    lg = torch.lgamma
    scale = torch.exp(0.5 * (lg(1 / shape) - lg(3 / shape)))  # sqrt(G(1/a) / G(3/a))
    mean = (right_std - left_std) * torch.exp(lg(2 / shape) - lg(1 / shape)) * scale
    return shape, mean, left_var, right_var


def neighbour_products(m: Tensor) -> dict[str, Tensor]:
    """Products of each coefficient with its right, lower, lower-right and upper-right neighbour,
    in-image pairs only: {orientation: (N, P_o)}."""
    return {
        "h": (m[..., :, :-1] * m[..., :, 1:]).flatten(1),
        "v": (m[..., :-1, :] * m[..., 1:, :]).flatten(1),
        "d1": (m[..., :-1, :-1] * m[..., 1:, 1:]).flatten(1),
        "d2": (m[..., 1:, :-1] * m[..., :-1, 1:]).flatten(1),
    }


def _scale_features(gray: Tensor) -> list[Tensor]:
    m = mscn(gray)
    feats = list(ggd_fit(m.flatten(1)))
    for pairs in neighbour_products(m).values():
        feats.extend(aggd_fit(pairs))
    return feats


def brisque_features(x: Tensor) -> Tensor:
    """(N, 3, H, W) images in [0, 1] -> (N, 36) NSS features, ordered as :data:`FEATURE_NAMES`."""
    gray = luminance(x)
    feats = []
    for s in range(SCALES):
        if s:
            gray = F.avg_pool2d(gray, 2)
        feats.extend(_scale_features(gray))
    return torch.stack(feats, dim=1)


def ggd_ratio(alpha: float) -> float:
    """``r(alpha)`` in closed form, for tests and documentation."""
    return math.exp(math.lgamma(1 / alpha) + math.lgamma(3 / alpha) - 2 * math.lgamma(2 / alpha))
