"""Attention-weighted prototypes (Nakka & Salzmann 2020, "Towards Robust Fine-grained Recognition
by Maximal Separation of Discriminative Features"; spec/methods.md §3, official code
``krishnakanthnakka/RobustFineGrained``, ``models/model_AttProto.py`` and ``models/pooling.py``).

Two heads share one backbone ``F`` (the :class:`~attnrobust.models.cnn.ResNetTrunk`):

* **A** (attentional pooling, Girdhar & Ramanan) on ``F``: a class-agnostic map
  ``ca = conv1x1(relu F)`` (1 channel) and class-specific maps ``cs = conv1x1(dropout(relu F))``
  (C channels); the A logits are ``mean_hw(ca * cs_c)``, and the attention map is
  ``M = max_c relu(ca * cs_c)`` divided by its spatial max, so ``M`` is in [0, 1] with max 1.
* **FR** (the prototype head, the paper's "Ours-FR"; ProtoPNet's layer): add-on layers
  ``z = sigmoid(conv1x1(relu(conv1x1 F)))`` in [0, 1]^D, ``prototypes_per_class`` prototypes
  per class (1x1 patches in z space), squared distances ``d_j(h, w) = ||z(h, w) - p_j||^2``,
  log-similarities ``s_j = log((d_j + 1) / (d_j + 1e-4))``, pooled with the attention
  ``g_j = max_hw M(h, w) * s_j(h, w)``; the FR logits are ``W g`` with ``W`` (C, K), no bias,
  initialised to +1 for a prototype's own class and -0.5 elsewhere.

The attention sees the backbone features, not the add-on output (the official configs'
``ATT_VERSION: 2``). ``forward`` returns the logits of the head named by the plain attribute
``head`` (``"fr"`` by default, or ``"a"``); :meth:`forward_heads` returns both heads with the
attention map and the distances the training loss needs.

Where every pooled maximum sits at the most attended patch (``M = 1`` there, a constant under
the normalisation), the FR head's input gradient flows through that patch's ``z`` only, and a
saturated sigmoid zeroes it: the suite's ``nonzero_gradients`` check catches such samples, and the per-head attacks
(:mod:`attnrobust.attacks.heads`) also attack FR through CE(A), as the official evaluation does.

Scaled to 32-px GTSRB on two CPU cores: the trunk is the baselines' (8x8 feature maps at 32 px),
``D = proto_dim`` = 32 instead of 128 and 3 prototypes per class instead of 10 (129 instead of
2000); the paper's dropout of 0.8 on the class-specific branch is ``dropout``, 0.5 by default
(0.8 cost 10-20 points of clean accuracy on both heads here).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnrobust.models.cnn import ResNetTrunk
from attnrobust.models.layers import Normalize

SIMILARITY_EPS = 1e-4  # ProtoPNet's epsilon in log((d + 1) / (d + eps)): similarity at d = 0 is log(1e4)
HEADS = ("fr", "a")


class ProtoAttnOutput(NamedTuple):
    fr: Tensor  # (B, C) logits of the prototype head
    a: Tensor  # (B, C) logits of the attentional-pooling head
    attention: Tensor  # (B, h, w) M in [0, 1], spatial max 1
    distances: Tensor  # (B, K, h, w) squared L2 distances of every latent patch to every prototype
    features: Tensor  # (B, D, h, w) latent patches z in [0, 1]


class AttentionalPooling(nn.Module):
    """Girdhar & Ramanan's attentional pooling as Nakka & Salzmann use it: (A logits, M)."""

    def __init__(self, channels: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.class_agnostic = nn.Conv2d(channels, 1, 1)
        self.class_specific = nn.Conv2d(channels, num_classes, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:  # features: (B, c, h, w)
        features = F.relu(features)
        ca = self.class_agnostic(features)  # (B, 1, h, w)
        cs = self.class_specific(self.dropout(features))  # (B, C, h, w)
        logits = (ca * cs).mean(dim=(2, 3))  # (B, C)
        mixed = F.relu(ca * cs).amax(dim=1)  # (B, h, w)
        # The official code divides by the max as it is; the floor only keeps an all-zero map finite.
        attention = mixed / mixed.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
        return logits, attention


class ProtoAttnNet(nn.Module):
    """Normalise → ResNet trunk → (A head: attentional pooling) + (FR head: prototypes pooled by M).

    Inputs (B, 3, H, W) in [0, 1]; ``forward`` returns (B, num_classes) logits of ``self.head``.
    """

    heads = HEADS  # the heads :func:`attnrobust.attacks.heads.run_head_attacks` evaluates

    def __init__(self, num_classes: int, mean: list[float], std: list[float], width: int = 24,
                 proto_dim: int = 32, prototypes_per_class: int = 3, dropout: float = 0.5,
                 head: str = "fr") -> None:
        super().__init__()
        if proto_dim < 1 or prototypes_per_class < 1 or not 0 <= dropout < 1:
            raise ValueError("need proto_dim >= 1, prototypes_per_class >= 1 and 0 <= dropout < 1")
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, not {head!r}")
        self.head = head
        self.normalize = Normalize(mean, std)
        self.trunk = ResNetTrunk(width)
        channels = self.trunk.out_channels
        self.add_on = nn.Sequential(nn.Conv2d(channels, proto_dim, 1), nn.ReLU(inplace=True),
                                    nn.Conv2d(proto_dim, proto_dim, 1), nn.Sigmoid())
        self.attention = AttentionalPooling(channels, num_classes, dropout)
        num_prototypes = num_classes * prototypes_per_class
        self.prototypes = nn.Parameter(torch.rand(num_prototypes, proto_dim))  # (K, D), uniform as ProtoPNet
        self.register_buffer("prototype_class", torch.arange(num_classes).repeat_interleave(prototypes_per_class),
                             persistent=False)  # (K,) the class each prototype belongs to
        self.last_layer = nn.Linear(num_prototypes, num_classes, bias=False)
        for m in self.add_on.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.last_layer.weight.copy_(self.class_connections() * 1.5 - 0.5)  # +1 own class, -0.5 others

    def train(self, mode: bool = True) -> ProtoAttnNet:
        """As :meth:`nn.Module.train`, except that a BatchNorm layer whose parameters are all frozen
        also keeps its running statistics (stays in eval mode): a frozen part computes the same
        function throughout a phase, so pushed prototypes stay real training patches while the
        last layer trains (the paper's VGG-16 has no BatchNorm)."""
        super().train(mode)
        if mode:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
                    m.eval()
        return self

    def class_connections(self) -> Tensor:
        """(C, K): 1 where prototype k belongs to class c, else 0 (the layout of ``last_layer.weight``)."""
        classes = torch.arange(self.last_layer.out_features, device=self.prototype_class.device)
        return (classes[:, None] == self.prototype_class[None, :]).float()

    def latent(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Backbone features F (B, c, h, w) and latent patches z (B, D, h, w) of images in [0, 1]."""
        features = self.trunk(self.normalize(x))
        return features, self.add_on(features)

    def prototype_distances(self, z: Tensor) -> Tensor:
        """(B, K, h, w) squared L2 distances ``||z(h, w) - p_k||^2``, expanded as ProtoPNet does.

        Always in fp32, also under bf16 autocast: the expansion cancels ``|z|^2 + |p|^2`` (about D/3)
        down to distances near 0, where bf16's 8-bit mantissa would leave only noise.
        """
        with torch.autocast(z.device.type, enabled=False):
            z, prototypes = z.float(), self.prototypes.float()
            z_sq = z.pow(2).sum(1, keepdim=True)  # (B, 1, h, w)
            p_sq = prototypes.pow(2).sum(1).view(1, -1, 1, 1)  # (1, K, 1, 1)
            cross = torch.einsum("bdhw,kd->bkhw", z, prototypes)  # (B, K, h, w)
            return F.relu(z_sq - 2 * cross + p_sq)

    def forward_heads(self, x: Tensor) -> ProtoAttnOutput:
        features, z = self.latent(x)
        a_logits, attention = self.attention(features)  # (B, C), (B, h, w)
        distances = self.prototype_distances(z)  # (B, K, h, w), fp32
        similarity = torch.log((distances + 1) / (distances + SIMILARITY_EPS))
        pooled = (attention.float()[:, None] * similarity).amax(dim=(2, 3))  # (B, K)
        return ProtoAttnOutput(self.last_layer(pooled), a_logits, attention, distances, z)

    def forward(self, x: Tensor) -> Tensor:  # x: (B, 3, H, W) in [0, 1]
        return getattr(self.forward_heads(x), self.head)

    def attention_maps(self, x: Tensor) -> Tensor:
        """(B, h, w) attention map M in [0, 1] (h, w = H/4, W/4)."""
        return self.forward_heads(x).attention

    def latent_distances(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Per sample, the squared distance from its most attended latent patch to the nearest
        prototype of its own class and to the nearest prototype of any other class: (own, other), (B,) each.

        The most attended patch is ``z`` at ``argmax_hw M`` (where ``M = 1``); it is the patch the
        FR head weighs fully. Separation moves ``other`` up relative to ``own``.
        """
        out = self.forward_heads(x)
        where = out.attention.flatten(1).argmax(1)  # (B,)
        d = out.distances.flatten(2)[torch.arange(len(x), device=x.device), :, where]  # (B, K)
        same = self.prototype_class[None, :] == y[:, None]  # (B, K)
        own = d.masked_fill(~same, float("inf")).amin(1)
        other = d.masked_fill(same, float("inf")).amin(1)
        return own, other

    @torch.no_grad()
    def push_prototypes(self, x: Tensor, y: Tensor, batch_size: int = 256) -> Tensor:
        """ProtoPNet's push: move each prototype onto its nearest latent patch among the training
        images of its class (eval mode). Returns (K, 3) ``(image index, h, w)`` of each chosen
        patch, -1 for a prototype whose class has no image (left where it was)."""
        was_training = self.training
        self.eval()
        k = len(self.prototypes)
        best = torch.full((k,), float("inf"), device=self.prototypes.device)
        patches = self.prototypes.detach().clone()
        source = torch.full((k, 3), -1, dtype=torch.long)
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size].to(best.device), y[start:start + batch_size].to(best.device)
            z = self.latent(xb)[1]  # (b, D, h, w)
            d = self.prototype_distances(z)  # (b, K, h, w)
            own = yb[:, None] == self.prototype_class[None, :]  # (b, K)
            d = d.masked_fill(~own[:, :, None, None], float("inf")).transpose(0, 1).flatten(1)  # (K, b*h*w)
            value, index = d.min(1)
            better = value < best
            if better.any():
                b, h, w = torch.unravel_index(index, (len(xb), *z.shape[2:]))
                best = torch.where(better, value, best)
                patches[better] = z[b, :, h, w][better]
                found = torch.stack([b + start, h, w], 1).cpu()
                source[better.cpu()] = found[better.cpu()]
        self.prototypes.copy_(patches)
        self.train(was_training)
        return source
