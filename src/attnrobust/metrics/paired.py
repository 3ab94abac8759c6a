"""Paired statistics for claims: per-sample outcomes of two models on the same attacked samples.

A claim compares experiments evaluated on the same seeded subset of test samples (the same ids),
so the evidence is paired: each sample is robust under A, under B, both or neither. Every
experiment is trained once per seed (``train.seeds``), and seed s of A is paired with seed s of
B, so the outcomes are ``(k, n)`` arrays: k seeds by the same n samples (1-D = one seed).

A claim is about methods, not about k particular trained models, so both sources of noise
count: the test samples and the training seeds. The effect is the mean over seeds of each seed
pair's statistic (for accuracies, ``mean(a) - mean(b)``); its 95% interval comes from a
two-level paired bootstrap that resamples the seed pairs *and* the samples (a drawn sample
brings all its seeds, since a sample hard for one model is hard for all; with one seed it is the
bootstrap over samples alone). Resampling samples alone would ignore the training noise: on the
default run two disjoint seed sets then gave intervals that did not overlap (README, "Stability").
For a claim about the sign of an accuracy difference the p-value is the larger of the exact
McNemar test stratified by seed (the discordant pairs of every seed pooled: under H0 each splits
50/50 within its seed) and the bootstrap's (an intersection-union test: significant on these
samples *and* across seeds); for a threshold ("> 20 points"), GAP, AUROC and ratio claims it is
the bootstrap's. Each comparison also reports its per-seed effects, the seed-to-seed spread.
p-values are Holm-corrected within each paper; a claim ``holds`` when its corrected p < alpha
and the effect lies on the claimed side of the threshold, is ``contradicted`` when significant
on the other side, and ``inconclusive`` otherwise.
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

    effect: float  # mean(a) - mean(b), over every seed and sample
    ci: tuple[float, float]  # 95% paired bootstrap interval of the effect
    p: float  # two-sided, for effect == threshold
    n: int  # paired samples (per seed)
    threshold: float
    seed_effects: tuple[float, ...] = ()  # the effect of each seed's pair on its own

    def as_dict(self) -> dict:
        seeds = [round(float(e), 4) for e in self.seed_effects]
        return {"effect": round(self.effect, 4), "ci_low": round(self.ci[0], 4), "ci_high": round(self.ci[1], 4),
                "p": float(f"{self.p:.3g}"), "n": self.n, "threshold": self.threshold, "seeds": len(seeds) or 1,
                "seed_effects": seeds, "seed_sd": round(float(np.std(seeds, ddof=1)), 4) if len(seeds) > 1 else None}


def _outcomes(values) -> np.ndarray:
    """Per-sample outcomes as (k seeds, n samples) bool; a 1-D vector is one seed."""
    arr = np.asarray(values, bool)
    return arr[None] if arr.ndim == 1 else arr


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value: under H0 the discordant pairs split 50/50. For (k, n)
    outcomes (k seeds) the discordant pairs of every seed are pooled: the exact test stratified
    by seed (each stratum's discordant pairs split 50/50 under H0, so their sum is binomial)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    m = only_a + only_b
    if m == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(m, i) for i in range(k + 1)) / 2.0 ** m
    return min(1.0, 2.0 * tail)


def _resamples(n: int, seed: int, count: int = BOOTSTRAP) -> np.ndarray:
    """(count, n) indices of samples drawn with replacement; a drawn sample brings all its seeds."""
    return np.random.default_rng(seed).integers(0, n, size=(count, n))


def _seed_weights(k: int, seed: int, count: int = BOOTSTRAP) -> np.ndarray:
    """(count, k) weights of the seed pairs in each resample: k pairs drawn with replacement, each
    weighted by how often it was drawn, over k (rows sum to 1). One seed: always weight 1."""
    if k == 1:
        return np.ones((count, 1))
    drawn = np.random.default_rng([seed, k]).integers(0, k, size=(count, k))
    return np.stack([np.bincount(row, minlength=k) for row in drawn]) / k


def _interval(boot: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of bootstrap effects."""
    return float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))


def _bootstrap_p(boot: np.ndarray, threshold: float) -> float:
    """Two-sided bootstrap p for effect == ``threshold``: the share of resamples on the other side,
    doubled; never below one resample's share (a bootstrap p is never exactly 0)."""
    p = min(1.0, 2.0 * min(float(np.mean(boot <= threshold)), float(np.mean(boot >= threshold))))
    return max(p, 1.0 / len(boot))


def compare(a: np.ndarray, b: np.ndarray, threshold: float = 0.0, seed: int = 0) -> Comparison:
    """Paired comparison of per-sample correctness ``a`` and ``b``: bool, (n,) for one seed or
    (k, n) for k seeds, seed s of ``a`` paired with seed s of ``b`` on the same n samples. The
    interval resamples seed pairs and samples; p is the larger of that bootstrap's and, for the
    sign (threshold 0), the exact stratified McNemar test's."""
    a, b = _outcomes(a), _outcomes(b)
    if a.shape != b.shape or a.ndim != 2 or a.size == 0:
        raise ValueError(f"need two aligned, non-empty (seeds, samples) outcome arrays, got {a.shape} and {b.shape}")
    diff = a.astype(np.float64) - b.astype(np.float64)  # (seeds, samples)
    weights, samples = _seed_weights(len(diff), seed), _resamples(diff.shape[1], seed)
    boot = np.concatenate([np.take_along_axis(w @ diff, i, axis=1).mean(axis=1)  # in chunks: (count, n) floats
                           for w, i in zip(np.array_split(weights, 8), np.array_split(samples, 8))])
    p = _bootstrap_p(boot, threshold)
    if threshold == 0.0:  # the sign: also exact on these samples
        p = max(p, mcnemar_exact(a, b))
    seed_effects = tuple(float(e) for e in a.mean(axis=1) - b.mean(axis=1))
    return Comparison(float(diff.mean()), _interval(boot), p, a.shape[1], threshold, seed_effects)


BOOTSTRAP_GAP = 1000  # resamples of videos for a GAP difference (each recomputes two pooled rankings per seed)


def _per_seed_scores(values) -> np.ndarray:
    arr = np.asarray(values, np.float64)
    return arr[None] if arr.ndim == 2 else arr


def compare_gap(scores_a: np.ndarray, scores_b: np.ndarray, labels: np.ndarray, threshold: float = 0.0,
                seed: int = 0, k: int = 20) -> Comparison:
    """Paired comparison of GAP@k of two models' scores on the same videos: (N, C) for one seed or
    (seeds, N, C), seed s of ``a`` against seed s of ``b``. The effect is the mean over seeds of
    GAP(a_s) - GAP(b_s) (GAP is a ranking pooled over one model's videos, so seeds are never mixed
    in one ranking); its 95% interval and the two-sided p (for effect == threshold) come from one
    bootstrap over seed pairs and videos, the same resampled videos for both models and every seed
    (no per-video outcome exists to pair; the videos are the sampled units)."""
    from attnrobust.metrics.multilabel import gap_at_k

    scores_a, scores_b = _per_seed_scores(scores_a), _per_seed_scores(scores_b)
    labels = np.asarray(labels)
    if scores_a.shape != scores_b.shape or scores_a.shape[1:] != labels.shape or labels.ndim != 2 or not len(labels):
        raise ValueError(f"need aligned (seeds, N, C) scores and (N, C) labels, got {scores_a.shape}, "
                         f"{scores_b.shape}, {labels.shape}")

    def effects(i) -> np.ndarray:
        return np.array([gap_at_k(sa[i], labels[i], k) - gap_at_k(sb[i], labels[i], k)
                         for sa, sb in zip(scores_a, scores_b)])

    seed_effects = effects(np.arange(len(labels)))
    weights = _seed_weights(len(scores_a), seed, BOOTSTRAP_GAP)
    boot = np.array([w @ effects(i) for w, i in zip(weights, _resamples(len(labels), seed, BOOTSTRAP_GAP))])
    return Comparison(float(seed_effects.mean()), _interval(boot), _bootstrap_p(boot, threshold), len(labels),
                      threshold, tuple(float(e) for e in seed_effects))


def compare_auroc(clean_ok: np.ndarray, clean_score: np.ndarray, conditions: list[tuple[np.ndarray, np.ndarray]],
                  threshold: float, seed: int = 0) -> Comparison:
    """Is a detector's AUROC above ``threshold``? Per sample, (n,) for one seed or (k, n) for the
    detectors of k seeds: ``clean_ok`` (the classifier gets the clean input right: its clean score
    is a negative) and ``clean_score``; each condition is ``(fooled, score)``: the perturbed input
    fools the classifier (a positive) and its score. The effect is the mean over seeds of the mean
    AUROC over the conditions (positives against the negatives of the same seed); its 95% interval
    and the two-sided p (for effect == threshold) come from one bootstrap over seeds and samples, a
    resampled sample bringing its clean and perturbed scores of every seed along. Resamples where
    some seed and condition has no positive or no negative are dropped (AUROC undefined)."""
    from attnrobust.metrics.detection import auroc

    clean_ok = _outcomes(clean_ok)
    as_2d = lambda v: np.asarray(v, np.float64)[None] if np.ndim(v) == 1 else np.asarray(v, np.float64)  # noqa: E731
    clean_score = as_2d(clean_score)
    conditions = [(_outcomes(f), as_2d(sc)) for f, sc in conditions]
    if not conditions or clean_score.shape != clean_ok.shape or any(
            f.shape != clean_ok.shape or sc.shape != clean_ok.shape for f, sc in conditions):
        raise ValueError("need at least one condition, every array aligned with the (seeds, samples)")

    def seed_aurocs(idx: np.ndarray) -> np.ndarray:
        out = []
        for s in range(len(clean_ok)):
            neg = clean_score[s, idx][clean_ok[s, idx]]
            values = [auroc(sc[s, idx][f[s, idx]], neg) for f, sc in conditions]
            out.append(float("nan") if any(np.isnan(v) for v in values) else float(np.mean(values)))
        return np.array(out)

    seed_effects = seed_aurocs(np.arange(clean_ok.shape[1]))
    if np.isnan(seed_effects).any():
        raise ValueError("AUROC undefined: no positive or no negative sample in some seed and condition")
    weights = _seed_weights(len(clean_ok), seed)
    boot = np.array([w @ seed_aurocs(i) for w, i in zip(weights, _resamples(clean_ok.shape[1], seed))])
    boot = boot[~np.isnan(boot)]
    return Comparison(float(seed_effects.mean()), _interval(boot), _bootstrap_p(boot, threshold), clean_ok.shape[1],
                      threshold, tuple(float(e) for e in seed_effects))


def compare_ratio(own_a: np.ndarray, other_a: np.ndarray, own_b: np.ndarray, other_b: np.ndarray,
                  threshold: float = 0.0, seed: int = 0) -> Comparison:
    """Paired comparison of a ratio of means, ``mean(other) / mean(own)``, of two models on the
    same samples (the latent separation of :mod:`attnrobust.attacks.heads`), (n,) for one seed or
    (k, n): the effect is the mean over seeds of ratio(a_s) - ratio(b_s); the 95% interval and
    the two-sided p come from one bootstrap over seed pairs and samples, the same samples for both
    models and every seed."""
    arrays = [np.asarray(v, np.float64) for v in (own_a, other_a, own_b, other_b)]
    arrays = [v[None] if v.ndim == 1 else v for v in arrays]
    if len({v.shape for v in arrays}) != 1 or arrays[0].ndim != 2 or not arrays[0].size:
        raise ValueError("need four aligned, non-empty (seeds, samples) arrays")
    own_a, other_a, own_b, other_b = arrays

    def effect(idx) -> np.ndarray:  # idx (..., n) -> (..., seeds)
        ratio = lambda own, other: other[:, idx].mean(-1) / np.maximum(own[:, idx].mean(-1), 1e-12)  # noqa: E731
        return ratio(own_a, other_a) - ratio(own_b, other_b)

    seed_effects = effect(np.arange(own_a.shape[1]))
    boot = (effect(_resamples(own_a.shape[1], seed)) * _seed_weights(own_a.shape[0], seed).T).sum(axis=0)
    return Comparison(float(seed_effects.mean()), _interval(boot), _bootstrap_p(boot, threshold), own_a.shape[1],
                      threshold, tuple(float(e) for e in seed_effects))


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
