"""S3TA (Zoran et al. 2019): a sequential top-down soft-attention classifier.

A ResNet trunk turns the image into a keys tensor K and a values tensor V, each concatenated
with a fixed spatial basis S (spec/methods.md §1, Fig. 2). An LSTM runs for ``glances`` steps;
at each step its state is decoded into ``heads`` queries, each query takes a softmax over all
positions of ``[K; S]`` (its attention map) and reads the attended ``[V; S]`` (its answer), and
the answers are the LSTM's input. Class logits are decoded from the LSTM output.

Choices the paper leaves open (``TODO(pdf)`` in the spec), made parameters here:

* ``readout``: ``"last"`` (default) decodes the logits from the last glance only, the literal
  reading of Fig. 2 ("the LSTM output is decoded into class logits"); ``"mean"`` averages the
  logits decoded after every glance.
* ``glances`` is a plain attribute: the trunk, queries and LSTM do not depend on it, so a model
  trained with 4 glances is evaluated with 1, 2 or 8 by setting ``model.glances``, without
  retraining (:func:`attnrobust.attacks.race.with_glances`). This is the "computational race" axis.
* Sizes (trunk ``width``, ``key_dim``, ``value_dim``, ``hidden``, ``heads``, ``basis_size``):
  small defaults that train on two CPU cores; the paper's model is a ResNet-152. The trunk is
  the baselines' (stride 4: 8x8 cells for 32-px inputs). ``value_dim`` defaults to the trunk's
  channel count (``4 * width``), so a glance can read every trunk channel. The old default,
  ``value_dim: 16`` (a 64 -> 16 projection at width 16), was the bottleneck that made S3TA train
  worse than its ``pgd_at`` baseline on the same trunk: GTSRB synthetic, random-targeted PGD-AT,
  10 epochs, clean test accuracy 0.31 (seed 0) with 16, 0.68 / 0.62 (seeds 0 / 1) with 64,
  baseline 0.47 / 0.38.
* The query network follows the Mott et al. replication (MLP on the LSTM state); queries are not
  fed back into the LSTM. ``temperature``: ``"none"`` (default) takes the plain inner product
  ``<q, [K; S]>`` as the attention logits, as Fig. 2 states; ``"sqrt"`` divides it by
  ``sqrt(key_dim + basis_size²)`` (Vaswani et al.'s scaling) and ``"learned"`` multiplies it by a
  learned per-head scale initialised there. ``"sqrt"`` softens the first glance, but the trained
  maps saturate all the same, and it cost accuracy here (seed 0, readout "last": clean 0.45 vs
  0.68 unscaled; with readout "mean", seeds 0 / 1: 0.43 / 0.56 vs 0.67 / 0.66).
* ``temperature: "cosine"`` takes unit-length queries and keys, so the logits of a map lie within
  ``+-cosine_scale`` and a map cannot saturate; ``key_basis: False`` leaves the spatial basis out
  of the keys (it stays in the values, so each answer still says where it was read): where a
  glance looks is then decided by what the image holds there. The experiments use both (below).
* ``initial_state``: ``"zeros"`` (default) starts the LSTM from zeros, so the first query is a
  learned constant and the first map depends on the image through the keys only; ``"learned"``
  learns h0 and c0 (no gain measured: 0.43 vs 0.45 clean, seed 0, with ``"sqrt"``).

Why the paper-literal maps did not depend on the image (``bench/s3ta_maps.py``: real GTSRB held
out by track and the synthetic GTSRB held out by image, one seed each, results in
``bench/results/s3ta_maps_*.json``). The fixed basis term ``q_S . S`` of the first glance's logits
spreads over positions more than the image term ``q_K . K`` (std over positions 2.73 vs 2.14 and
1.89 vs 0.38 on real GTSRB, seeds 0 / 1; 1.68 vs 0.86 synthetic), and the unscaled logits saturate
the softmax: the largest weight of a map is 0.95-1.00, where its gradient vanishes and the map can
no longer move. Measured as the mean total-variation distance between two images' maps
(attnrobust.metrics.attention; 0 = one map for every image), per glance: 0.22 (seed 0) and 0.0004
(seed 1: the same cell for every image at every glance) on real GTSRB, 0.19-0.23 synthetic. Cosine
attention alone (scale 10) keeps the basis in charge (0.14-0.25, largest weight 0.88). Content keys
without the basis, cosine scale 5: 0.65-0.68 on real GTSRB (seeds 0 / 1), 0.71-0.73 synthetic,
largest weight 0.22-0.40, at held-out clean accuracy 0.737 / 0.566 on real GTSRB (literal: 0.692 /
0.675) and 0.436 synthetic (literal 0.573): within the seed-to-seed spread (the default run's S3TA:
clean 0.60, seed sd 0.10), so not a measured loss, but not shown to be free either.

On the synthetic GTSRB data the paper-literal maps were nearly one-hot (entropy 0.1-0.2 nats of ln 64 = 4.16) and
lie on the sign (99% of the mass; the sign is always centred, so there is nothing to search for):
one head looks at a fixed central cell, the other picks one of two central cells depending on
the image (mostly on its class). Freezing every map at its test-set mean costs 8-19 points of
clean accuracy, so the image-dependent choice is used, but most of the model is a learned crop.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from attnrobust.models.cnn import ResNetTrunk
from attnrobust.models.layers import Normalize


def spatial_basis(height: int, width: int, size: int, device=None) -> Tensor:
    """Fixed basis ``S[u, v, i, j] = cos(pi*u*i/h) * cos(pi*v*j/w)``, ``u, v in 1..size``; (size², h, w)."""
    freq = torch.arange(1, size + 1, dtype=torch.float32, device=device)  # (U,)
    rows = torch.cos(math.pi * freq[:, None] * torch.arange(height, device=device)[None, :] / height)  # (U, h)
    cols = torch.cos(math.pi * freq[:, None] * torch.arange(width, device=device)[None, :] / width)  # (U, w)
    return (rows[:, None, :, None] * cols[None, :, None, :]).reshape(size * size, height, width)


class S3TA(nn.Module):
    """Normalise → ResNet trunk → keys/values (+ spatial basis) → LSTM with attention glances → logits.

    ``forward`` returns logits (B, num_classes); :meth:`forward_with_attention` also returns the
    attention maps (B, glances, heads, h, w), each summing to one over (h, w).
    """

    def __init__(self, num_classes: int, mean: list[float], std: list[float], width: int = 16,
                 key_dim: int = 16, value_dim: int | None = None, hidden: int = 64, heads: int = 2,
                 glances: int = 4, basis_size: int = 8, readout: Literal["last", "mean"] = "last",
                 temperature: Literal["none", "sqrt", "learned", "cosine"] = "none", cosine_scale: float = 10.0,
                 key_basis: bool = True, initial_state: Literal["zeros", "learned"] = "zeros") -> None:
        super().__init__()
        if glances < 1 or heads < 1 or basis_size < 1:
            raise ValueError("need glances >= 1, heads >= 1, basis_size >= 1")
        if readout not in ("last", "mean"):
            raise ValueError(f"readout must be 'last' or 'mean', not {readout!r}")
        if temperature not in ("none", "sqrt", "learned", "cosine"):
            raise ValueError(f"temperature must be 'none', 'sqrt', 'learned' or 'cosine', not {temperature!r}")
        if cosine_scale <= 0:
            raise ValueError(f"cosine_scale must be > 0, not {cosine_scale}")
        if initial_state not in ("zeros", "learned"):
            raise ValueError(f"initial_state must be 'zeros' or 'learned', not {initial_state!r}")
        self.glances, self.heads, self.basis_size, self.readout = glances, heads, basis_size, readout
        self.cosine, self.key_basis = temperature == "cosine", key_basis
        self.normalize = Normalize(mean, std)
        self.trunk = ResNetTrunk(width)
        value_dim = self.trunk.out_channels if value_dim is None else value_dim
        self.query_dim = key_dim + (basis_size ** 2 if key_basis else 0)  # queries live in [K; S] (or K) space
        answer_dim = heads * (value_dim + basis_size ** 2)
        self.keys = nn.Conv2d(self.trunk.out_channels, key_dim, 1)
        self.values = nn.Conv2d(self.trunk.out_channels, value_dim, 1)
        self.query = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
                                   nn.Linear(hidden, heads * self.query_dim))
        self.core = nn.LSTMCell(answer_dim, hidden)
        self.head = nn.Linear(hidden, num_classes)
        log_scale = torch.full((heads, 1), {"none": 0.0, "cosine": math.log(cosine_scale)}.get(
            temperature, -0.5 * math.log(self.query_dim)))
        if temperature == "learned":
            self.log_scale = nn.Parameter(log_scale)  # (heads, 1): one scale per head
        else:
            self.register_buffer("log_scale", log_scale, persistent=False)
        initial = torch.zeros(2, hidden)  # (h0, c0)
        if initial_state == "learned":
            self.initial = nn.Parameter(initial)
        else:
            self.register_buffer("initial", initial, persistent=False)

    def _keys_values(self, x: Tensor) -> tuple[Tensor, Tensor, tuple[int, int]]:
        features = self.trunk(self.normalize(x))  # (B, C, h, w)
        b, _, h, w = features.shape
        basis = spatial_basis(h, w, self.basis_size, features.device).expand(b, -1, -1, -1)  # (B, U², h, w)
        keys = torch.cat([self.keys(features), basis], 1) if self.key_basis else self.keys(features)
        keys = keys.flatten(2).transpose(1, 2)  # (B, hw, dk + U²), or (B, hw, dk) without the basis
        if self.cosine:
            keys = nn.functional.normalize(keys, dim=-1)
        values = torch.cat([self.values(features), basis], 1).flatten(2).transpose(1, 2)  # (B, hw, dv + U²)
        return keys, values, (h, w)

    def forward_with_attention(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits (B, num_classes) and attention maps (B, glances, heads, h, w)."""
        keys, values, (h, w) = self._keys_values(x)
        b = keys.shape[0]
        state = (self.initial[0].expand(b, -1), self.initial[1].expand(b, -1))  # (B, hidden) each
        scale = self.log_scale.exp()  # (n, 1)
        logits, maps = [], []
        for _ in range(self.glances):
            queries = self.query(state[0]).view(b, self.heads, self.query_dim)  # (B, n, dk + U²)
            if self.cosine:
                queries = nn.functional.normalize(queries, dim=-1)
            attention = torch.softmax(scale * (queries @ keys.transpose(1, 2)), dim=-1)  # (B, n, hw)
            answers = (attention @ values).flatten(1)  # (B, n * (dv + U²))
            state = self.core(answers, state)
            maps.append(attention.view(b, self.heads, h, w))
            if self.readout == "mean" or len(maps) == self.glances:
                logits.append(self.head(state[0]))
        return torch.stack(logits).mean(0), torch.stack(maps, 1)

    def forward(self, x: Tensor) -> Tensor:  # x: (B, 3, H, W) in [0, 1]
        return self.forward_with_attention(x)[0]

    def attention_maps(self, x: Tensor) -> Tensor:
        """Where the model looked, for pictures: the maps averaged over glances and heads, each
        scaled to a maximum of 1; (B, h, w) in [0, 1]."""
        maps = self.forward_with_attention(x)[1].mean(dim=(1, 2))  # (B, h, w)
        return maps / maps.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
