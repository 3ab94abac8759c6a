"""The ``iqa_kd`` detector: NSS quality features + teacher-student features -> logistic regression.

The score of an input is the logit of a logistic regression on standardised features; higher
means "reject". Every feature is a differentiable function of the input, so the adaptive attack
(:mod:`attnrobust.detect.evaluate`) gets true gradients through the whole detector and no part
of it needs BPDA:

* ``nss``: the 36 BRISQUE-style features of :mod:`attnrobust.detect.nss`;
* ``kd``: ``log KL(p_teacher || p_student)`` (the teacher-student disagreement), the teacher's and
  the student's top-1 log-probability, and the student's log-probability of the teacher's class
  (a soft version of "the student disagrees with the teacher's top-1").

Fitting sees clean and degraded training images only (:class:`attnrobust.detect.config.FitConfig`
says which count as positive); the adversarial examples it is evaluated on are never used.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnrobust.detect.config import FitConfig
from attnrobust.detect.corruptions import random_corruptions
from attnrobust.detect.nss import FEATURE_NAMES as NSS_FEATURES
from attnrobust.detect.nss import brisque_features
from attnrobust.errors import UserError
from attnrobust.metrics.detection import auroc

KD_FEATURES = ("kd_log_kl", "teacher_max_logp", "student_max_logp", "student_logp_teacher_top1")
MIN_PER_CLASS = 8  # fewer positives or negatives than this cannot fit a 40-feature detector


def feature_names(kind: str) -> tuple[str, ...]:
    """The feature columns of ``fit.features`` = ``nss+kd`` | ``nss`` | ``kd``, in order."""
    return (NSS_FEATURES if "nss" in kind else ()) + (KD_FEATURES if "kd" in kind else ())


def kd_features(teacher_logits: Tensor, student_logits: Tensor) -> Tensor:
    """(N, 4) teacher-student features, ordered as :data:`KD_FEATURES`."""
    log_pt = F.log_softmax(teacher_logits, dim=1)
    log_ps = F.log_softmax(student_logits, dim=1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(1).clamp_min(0)
    top1 = teacher_logits.argmax(1, keepdim=True)
    return torch.stack([torch.log(kl + 1e-6), log_pt.max(1).values, log_ps.max(1).values,
                        log_ps.gather(1, top1).squeeze(1)], dim=1)


class LogisticHead(nn.Module):
    """``score = ((f - mean) / std) @ weight + bias``; buffers, so ``state_dict`` carries all of it."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("std", torch.ones(num_features))
        self.register_buffer("weight", torch.zeros(num_features))
        self.register_buffer("bias", torch.zeros(()))

    def forward(self, features: Tensor) -> Tensor:  # (N, K) -> (N,)
        return ((features - self.mean) / self.std) @ self.weight + self.bias


class IQAKDDetector(nn.Module):
    """Teacher, student and head in one module: ``joint(x)`` -> (teacher logits, detector score)."""

    def __init__(self, teacher: nn.Module, student: nn.Module, head: LogisticHead, kind: str) -> None:
        super().__init__()
        self.teacher, self.student, self.head, self.kind = teacher, student, head, kind

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        teacher_logits = self.teacher(x)
        parts = []
        if "nss" in self.kind:
            parts.append(brisque_features(x))
        if "kd" in self.kind:
            parts.append(kd_features(teacher_logits, self.student(x)))
        return torch.cat(parts, dim=1), teacher_logits

    def joint(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features, teacher_logits = self.features_and_logits(x)
        return teacher_logits, self.head(features)

    def forward(self, x: Tensor) -> Tensor:
        return self.joint(x)[1]


@torch.no_grad()
def features_and_logits(detector: IQAKDDetector, x: Tensor, device, batch_size: int = 256) -> tuple[Tensor, Tensor]:
    """Detector features and teacher logits for every row of ``x``, batched, on the CPU."""
    detector.eval()
    feats, logits = [], []
    for s in range(0, len(x), batch_size):
        f, z = detector.features_and_logits(x[s:s + batch_size].to(device))
        feats.append(f.cpu())
        logits.append(z.float().cpu())
    return torch.cat(feats), torch.cat(logits)


def fit_logistic(features: Tensor, labels: Tensor, l2: float) -> LogisticHead:
    """Class-balanced, L2-penalised logistic regression on standardised features, by full-batch
    L-BFGS in float64 (deterministic). Constant features get std 1 and so weight ~0."""
    f = features.double()
    mean, std = f.mean(0), f.std(0)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    z, t = (f - mean) / std, labels.double()
    n_pos = t.sum()
    sample_weight = torch.where(t > 0, 0.5 / n_pos, 0.5 / (len(t) - n_pos))  # each class weighs one half
    params = torch.zeros(z.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([params], lr=1.0, max_iter=500, tolerance_grad=1e-10, tolerance_change=1e-12,
                                  history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        logits = z @ params[:-1] + params[-1]
        loss = (sample_weight * F.binary_cross_entropy_with_logits(logits, t, reduction="none")).sum()
        loss = loss + l2 * (params[:-1] ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    head = LogisticHead(z.shape[1])
    head.mean.copy_(mean.float())
    head.std.copy_(std.float())
    head.weight.copy_(params.detach()[:-1].float())
    head.bias.copy_(params.detach()[-1].float())
    return head


def training_labels(rule: str, y: Tensor, clean_logits: Tensor, degraded_logits: Tensor,
                    degraded_y: Tensor) -> tuple[Tensor, Tensor]:
    """Which clean rows are negatives and which degraded rows positives under ``fit.positives``
    (see :class:`attnrobust.detect.config.FitConfig`): two boolean masks."""
    if rule == "all":
        return torch.ones(len(y), dtype=torch.bool), torch.ones(len(degraded_y), dtype=torch.bool)
    if rule == "misclassified":
        return clean_logits.argmax(1) == y, degraded_logits.argmax(1) != degraded_y
    k = min(5, clean_logits.shape[1])
    in_top5 = lambda logits, t: (logits.topk(k, dim=1).indices == t[:, None]).any(1)  # noqa: E731
    return in_top5(clean_logits, y), ~in_top5(degraded_logits, degraded_y)


def _count_by_condition(conditions: list[tuple[str, float]], keep: Tensor) -> dict[str, int]:
    counts: dict[str, int] = {}
    for (family, severity), kept in zip(conditions, keep.tolist()):
        key = f"{family}@{severity:g}"
        counts[key] = counts.get(key, 0) + int(kept)
    return dict(sorted(counts.items()))


def fit_detector(detector: IQAKDDetector, x: Tensor, y: Tensor, fit: FitConfig, corruptions: dict[str, list[float]],
                 generator: torch.Generator, device, where: str) -> dict:
    """Fit ``detector.head`` in place on held-out training images ``x`` and ``fit.copies`` degraded
    copies of each; returns what the fit saw (counts, training AUROC, weights by feature)."""
    degraded, conditions = random_corruptions(x, corruptions, fit.copies, generator)
    degraded_y = y.repeat(fit.copies)
    clean_f, clean_z = features_and_logits(detector, x, device)
    degr_f, degr_z = features_and_logits(detector, degraded, device)
    neg, pos = training_labels(fit.positives, y, clean_z, degr_z, degraded_y)
    if int(neg.sum()) < MIN_PER_CLASS or int(pos.sum()) < MIN_PER_CLASS:
        raise UserError(f"{where}: only {int(pos.sum())} positive and {int(neg.sum())} negative training images "
                        f"under fit.positives={fit.positives}; use stronger corruptions, more fit.copies, a larger "
                        f"fit.holdout or fit.positives: all")
    features = torch.cat([clean_f[neg], degr_f[pos]])
    labels = torch.cat([torch.zeros(int(neg.sum())), torch.ones(int(pos.sum()))])
    detector.head = fit_logistic(features, labels, fit.l2)
    with torch.no_grad():
        scores = detector.head(features)
    names = feature_names(detector.kind)
    return {
        "n_negative": int(neg.sum()), "n_positive": int(pos.sum()), "n_clean": len(x), "n_degraded": len(degraded),
        "teacher_acc_clean": float((clean_z.argmax(1) == y).float().mean()),
        "teacher_acc_degraded": float((degr_z.argmax(1) == degraded_y).float().mean()),
        "positives_by_condition": _count_by_condition(conditions, pos),
        "train_auroc": auroc(scores[labels == 1].numpy(), scores[labels == 0].numpy()),
        "weights": {n: round(float(w), 6) for n, w in zip(names, detector.head.weight)},
        "bias": round(float(detector.head.bias), 6),
    }
