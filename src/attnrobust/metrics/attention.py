"""How much attention maps depend on the input.

An attention model whose maps are the same for every image is a learned fixed crop, whatever it
gains: Zoran et al.'s claim is about attention that searches. :func:`map_variation` is the mean
total-variation distance between the maps of two different images, per glance (0: every image gets
the same map; 1: the maps of any two images are disjoint); :func:`map_shift` the same distance
between the map of an image and the map of its adversarial example.
"""
from __future__ import annotations

import torch
from torch import Tensor


def _flat(maps: Tensor) -> Tensor:
    """(N, glances, heads, h, w) -> (glances, heads, N, h*w), in float64 (sums of many small terms)."""
    if maps.ndim != 5:
        raise ValueError(f"maps must be (N, glances, heads, h, w), not {tuple(maps.shape)}")
    return maps.detach().to(torch.float64).flatten(3).permute(1, 2, 0, 3)


def map_variation(maps: Tensor) -> list[float]:
    """Per glance, the total-variation distance ``0.5 * sum |m_i - m_j|`` between the maps of two
    different images, averaged over every pair ``i < j`` and over heads. Needs two images or more."""
    flat = _flat(maps)
    n = flat.shape[2]
    if n < 2:
        raise ValueError("map_variation needs the maps of two images or more")
    dist = 0.5 * torch.cdist(flat, flat, p=1)  # (glances, heads, N, N), symmetric, zero diagonal
    pairs = n * (n - 1)  # ordered pairs i != j: the mean over i < j
    return [float(v) for v in (dist.sum(dim=(-1, -2)) / pairs).mean(dim=1)]


def map_shift(clean: Tensor, adversarial: Tensor) -> list[float]:
    """Per glance, the mean total-variation distance between an image's map and its adversarial
    example's map (same image, same glance and head), averaged over images and heads."""
    a, b = _flat(clean), _flat(adversarial)
    if a.shape != b.shape:
        raise ValueError(f"clean and adversarial maps differ in shape: {tuple(clean.shape)} vs {tuple(adversarial.shape)}")
    return [float(v) for v in (0.5 * (a - b).abs().sum(-1)).mean(dim=(1, 2))]


def peak_mass(maps: Tensor) -> list[float]:
    """Per glance, the mean largest weight of a map (1: one-hot, 1/(h*w): uniform)."""
    return [float(v) for v in _flat(maps).amax(-1).mean(dim=(1, 2))]
