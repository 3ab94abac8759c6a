"""Paired statistics for claims: per-sample outcomes of two models on the same attacked samples.

A claim compares experiments evaluated on the same seeded subset of test samples (the same ids),
so the evidence is paired: each sample is robust under A, under B, both or neither. The effect is
the difference of accuracies, ``mean(a) - mean(b)``, with a 95% paired bootstrap interval over
samples; the p-value is the exact McNemar test (two-sided binomial test on the discordant pairs)
when the claim is about the sign of the effect, and a paired bootstrap test when it states a
threshold ("> 20 points"). p-values are Holm-corrected within each paper; a claim ``holds`` when
its corrected p < alpha and the effect lies on the claimed side of the threshold, is
``contradicted`` when significant on the other side, and ``inconclusive`` otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
BOOTSTRAP = 4000  # resamples: the interval's ends move by well under a sample at n = 200
VERDICTS = ("holds", "contradicted", "inconclusive")


@dataclass(frozen=True)
class Comparison:
    """``a`` better than ``b`` by more than ``threshold`` (accuracy units, 0.2 = 20 points)?"""

    effect: float  # mean(a) - mean(b)
    ci: tuple[float, float]  # 95% paired bootstrap interval of the effect
    p: float  # two-sided, for effect == threshold
    n: int  # paired samples
    threshold: float

    def as_dict(self) -> dict:
        return {"effect": round(self.effect, 4), "ci_low": round(self.ci[0], 4), "ci_high": round(self.ci[1], 4),
                "p": float(f"{self.p:.3g}"), "n": self.n, "threshold": self.threshold}


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value: under H0 the discordant pairs split 50/50."""
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    m = only_a + only_b
    if m == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(m, i) for i in range(k + 1)) / 2.0 ** m
    return min(1.0, 2.0 * tail)


def _bootstrap_effects(a: np.ndarray, b: np.ndarray, seed: int) -> np.ndarray:
    diff = a.astype(np.float64) - b.astype(np.float64)
    index = np.random.default_rng(seed).integers(0, len(diff), size=(BOOTSTRAP, len(diff)))
    return diff[index].mean(axis=1)


def _interval(boot: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of bootstrap effects."""
    return float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))


def _bootstrap_p(boot: np.ndarray, threshold: float) -> float:
    """Two-sided bootstrap p for effect == ``threshold``: the share of resamples on the other side,
    doubled; never below one resample's share (a bootstrap p is never exactly 0)."""
    p = min(1.0, 2.0 * min(float(np.mean(boot <= threshold)), float(np.mean(boot >= threshold))))
    return max(p, 1.0 / len(boot))


def compare(a: np.ndarray, b: np.ndarray, threshold: float = 0.0, seed: int = 0) -> Comparison:
    """Paired comparison of per-sample correctness ``a`` and ``b`` (bool, aligned by sample)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"need two aligned, non-empty 1-D outcome vectors, got {a.shape} and {b.shape}")
    effect = float(a.mean() - b.mean())
    boot = _bootstrap_effects(a, b, seed)
    p = mcnemar_exact(a, b) if threshold == 0.0 else _bootstrap_p(boot, threshold)
    return Comparison(effect, _interval(boot), p, len(a), threshold)


BOOTSTRAP_GAP = 1000  # resamples of videos for a GAP difference (each recomputes two pooled rankings)


def compare_gap(scores_a: np.ndarray, scores_b: np.ndarray, labels: np.ndarray, threshold: float = 0.0,
                seed: int = 0, k: int = 20) -> Comparison:
    """Paired comparison of GAP@k of two models' (N, C) scores on the same videos: the effect is
    GAP(a) - GAP(b); its 95% interval and the two-sided p (for effect == threshold) come from one
    bootstrap over videos, resampling the same videos for both models (GAP is a pooled ranking,
    so no per-video outcome exists to pair; the videos are the sampled units)."""
    from attnrobust.metrics.multilabel import gap_at_k

    if scores_a.shape != scores_b.shape or scores_a.shape != labels.shape or scores_a.ndim != 2 or not len(labels):
        raise ValueError(f"need aligned (N, C) scores and labels, got {scores_a.shape}, {scores_b.shape}, "
                         f"{labels.shape}")
    effect = gap_at_k(scores_a, labels, k) - gap_at_k(scores_b, labels, k)
    index = np.random.default_rng(seed).integers(0, len(labels), size=(BOOTSTRAP_GAP, len(labels)))
    boot = np.array([gap_at_k(scores_a[i], labels[i], k) - gap_at_k(scores_b[i], labels[i], k) for i in index])
    return Comparison(float(effect), _interval(boot), _bootstrap_p(boot, threshold), len(labels), threshold)


def compare_auroc(clean_ok: np.ndarray, clean_score: np.ndarray, conditions: list[tuple[np.ndarray, np.ndarray]],
                  threshold: float, seed: int = 0) -> Comparison:
    """Is a detector's AUROC above ``threshold``? Per sample (n,): ``clean_ok`` (the classifier gets
    the clean input right: its clean score is a negative) and ``clean_score``; each condition is
    ``(fooled, score)``: the perturbed input fools the classifier (a positive) and its score. The
    effect is the mean AUROC over the conditions (positives against the negatives); its 95%
    interval and the two-sided p (for effect == threshold) come from one bootstrap over samples, a
    resampled sample bringing its clean and perturbed scores along. Resamples where some condition
    has no positive or no negative are dropped (their AUROC is undefined)."""
    from attnrobust.metrics.detection import auroc

    clean_ok = np.asarray(clean_ok, bool)
    clean_score = np.asarray(clean_score, np.float64)
    conditions = [(np.asarray(f, bool), np.asarray(sc, np.float64)) for f, sc in conditions]
    if not conditions or any(f.shape != clean_ok.shape or sc.shape != clean_ok.shape for f, sc in conditions):
        raise ValueError("need at least one condition, every array aligned with the samples")

    def mean_auroc(idx: np.ndarray) -> float:
        neg = clean_score[idx][clean_ok[idx]]
        values = [auroc(sc[idx][f[idx]], neg) for f, sc in conditions]
        return float("nan") if any(np.isnan(v) for v in values) else float(np.mean(values))

    everyone = np.arange(len(clean_ok))
    effect = mean_auroc(everyone)
    if np.isnan(effect):
        raise ValueError("AUROC undefined: no positive or no negative sample in some condition")
    index = np.random.default_rng(seed).integers(0, len(clean_ok), size=(BOOTSTRAP, len(clean_ok)))
    boot = np.array([mean_auroc(i) for i in index])
    boot = boot[~np.isnan(boot)]
    return Comparison(effect, _interval(boot), _bootstrap_p(boot, threshold), len(clean_ok), threshold)


def compare_ratio(own_a: np.ndarray, other_a: np.ndarray, own_b: np.ndarray, other_b: np.ndarray,
                  threshold: float = 0.0, seed: int = 0) -> Comparison:
    """Paired comparison of a ratio of means, ``mean(other) / mean(own)``, of two models on the
    same samples (the latent separation of :mod:`attnrobust.attacks.heads`): the effect is
    ratio(a) - ratio(b); the 95% interval and the two-sided p come from one bootstrap over
    samples, resampling the same samples for both models."""
    arrays = [np.asarray(v, np.float64) for v in (own_a, other_a, own_b, other_b)]
    if len({v.shape for v in arrays}) != 1 or arrays[0].ndim != 1 or not len(arrays[0]):
        raise ValueError("need four aligned, non-empty 1-D arrays")
    own_a, other_a, own_b, other_b = arrays

    def effect(idx) -> np.ndarray:
        ratio = lambda own, other: other[idx].mean(-1) / np.maximum(own[idx].mean(-1), 1e-12)  # noqa: E731
        return ratio(own_a, other_a) - ratio(own_b, other_b)

    index = np.random.default_rng(seed).integers(0, len(own_a), size=(BOOTSTRAP, len(own_a)))
    boot = effect(index)
    return Comparison(float(effect(np.arange(len(own_a)))), _interval(boot), _bootstrap_p(boot, threshold),
                      len(own_a), threshold)


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def claim_p(comparisons: list[Comparison], require: str = "all", alpha: float = ALPHA) -> tuple[float, bool]:
    """(p, claimed side) of a claim made of several comparisons (e.g. one per budget).

    ``require="all"`` (at least as good at every budget): an intersection-union test, the
    largest p when every effect lies on the claimed side, else the smallest p on the wrong side.
    ``require="any"`` (better somewhere, worse nowhere): the smallest p among the comparisons
    on the claimed side, Bonferroni-corrected over the k comparisons; a comparison significantly
    on the wrong side (also corrected) speaks against the claim first."""
    right = [c.p for c in comparisons if c.effect > c.threshold]
    wrong = [c.p for c in comparisons if c.effect <= c.threshold]
    if require == "all":
        return (min(wrong), False) if wrong else (max(right), True)
    k = len(comparisons)
    if wrong and min(1.0, k * min(wrong)) < alpha or not right:
        return min(1.0, k * min(wrong)), False
    return min(1.0, k * min(right)), True


def verdicts(claims: list[list[Comparison]], alpha: float = ALPHA,
             require: list[str] | None = None) -> list[tuple[str, float]]:
    """(verdict, Holm-adjusted p) of each claim of one paper, from its comparisons; ``require``
    is each claim's "all" or "any" (:func:`claim_p`, default "all")."""
    tested = [claim_p(c, r) for c, r in zip(claims, require or ["all"] * len(claims))]
    adjusted = holm([p for p, _ in tested])
    return [("inconclusive" if p >= alpha else "holds" if side else "contradicted", p)
            for (_, side), p in zip(tested, adjusted)]
