"""Multi-label video metrics exactly as the YouTube-8M starter code defines them.

``predictions`` are (N videos, C classes) scores (the starter models output sigmoid
probabilities; any monotone score works), ``labels`` are (N, C) multi-hot {0, 1}.

GAP@k follows ``eval_util.calculate_gap`` + ``AveragePrecisionCalculator.accumulate`` /
``peek_ap_at_n`` / ``ap_at_n`` (google/youtube-8m): keep each video's top-k classes
(``numpy.argpartition``), pool the pairs of *all* videos into one class-major list, push them one
by one onto a ``heapq`` heap of ``(score, label)`` tuples and read the heap's array back, shuffle
that with the permutation ``random.seed(0); random.sample(range(n), n)``, stable-sort by score
descending and sum the precision at each hit divided by the number of ground-truth positives over
*all* labels, including the ones outside the top-k (so a video with more than k labels caps GAP
below 1).

Tie order: only tied scores (quantised or saturated sigmoids) feel the heap and the shuffle, and
here they get exactly the starter's order: the same argpartition, the same heap (ties between
equal scores broken by the label, as tuple comparison does), the same permutation. The starter
reseeds Python's global ``random``; here a private ``random.Random(0)`` draws the same
permutation without touching global state.
"""
from __future__ import annotations

import heapq
import random

import numpy as np


def _check(predictions: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    if predictions.ndim != 2 or predictions.shape != labels.shape:
        raise ValueError(f"predictions {predictions.shape} and labels {labels.shape} must be equal (N, C) shapes")
    return predictions, labels


def _pooled_ap(scores: np.ndarray, hits: np.ndarray, num_positives: float) -> float:
    """Non-interpolated AP of one ranked list, as ``accumulate`` + ``peek_ap_at_n`` (top_n None).

    ``scores``/``hits`` are 1-D in the order the starter code accumulates them; its heap, the
    seeded shuffle and the stable descending sort reproduce its tie-breaking exactly.
    """
    if num_positives <= 0 or len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    ranked_scores, ranked_hits = scores[order], hits[order]
    if np.any((ranked_scores[1:] == ranked_scores[:-1]) & (ranked_hits[1:] != ranked_hits[:-1])):
        # a tie mixes a hit and a miss: their order changes AP, so follow the starter's exactly
        scores, hits = _heap_order(scores, hits)
        perm = random.Random(0).sample(range(len(scores)), len(scores))
        scores, hits = scores[perm], hits[perm]
        ranked_hits = hits[np.argsort(-scores, kind="stable")]  # == sorted(..., reverse=True): stable for ties
    # else every tie is all hits or all misses, so any order of a tie gives the starter's AP
    hits = ranked_hits.astype(np.float64)
    precision_at_rank = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision_at_rank * hits).sum() / num_positives)


def _heap_order(scores: np.ndarray, hits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs in the order of the array of a heap they are pushed onto one by one
    (``AveragePrecisionCalculator.accumulate``; ``peek_ap_at_n`` reads ``self._heap`` as it lies)."""
    heap: list[tuple[float, int]] = []
    for pair in zip(scores.astype(np.float64).tolist(), hits.astype(np.int64).tolist()):
        heapq.heappush(heap, pair)  # float32 -> float64 is exact and keeps every comparison
    return np.array([p for p, _ in heap], dtype=np.float64), np.array([h for _, h in heap], dtype=np.int64)


def _top_k_mask(predictions: np.ndarray, k: int) -> np.ndarray:
    """(N, C) bool: True for each video's top-k classes, chosen with ``argpartition`` like the starter."""
    if k <= 0:
        raise ValueError("k must be a positive integer")
    k = min(k, predictions.shape[1])
    top = np.argpartition(predictions, -k, axis=1)[:, -k:]  # (N, k), unordered
    mask = np.zeros(predictions.shape, dtype=bool)
    np.put_along_axis(mask, top, True, axis=1)
    return mask


def gap_at_k(predictions: np.ndarray, labels: np.ndarray, k: int = 20) -> float:
    """Global Average Precision over each video's top-k predictions (YouTube-8M GAP@20).

    >>> gap_at_k(np.array([[0.9, 0.1]]), np.array([[1, 0]]), k=1)
    1.0
    """
    predictions, labels = _check(predictions, labels)
    mask = _top_k_mask(predictions, k)
    # The starter regroups the top-k triplets per class (class-major, videos in order),
    # then flattens: that order feeds the seeded shuffle, so it must be reproduced.
    cls, vid = np.nonzero(mask.T)  # (N*k,) each, class-major
    scores = predictions[vid, cls].astype(np.float64)
    hits = labels[vid, cls] > 0
    return _pooled_ap(scores, hits, float(labels.sum()))


def hit_at_1(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of videos whose single highest-scoring class is a true label (starter ``calculate_hit_at_one``)."""
    predictions, labels = _check(predictions, labels)
    if len(labels) == 0:
        return 0.0
    top = predictions.argmax(axis=1)
    return float(np.mean(labels[np.arange(len(labels)), top] > 0))


def average_precision_per_class(predictions: np.ndarray, labels: np.ndarray,
                                top_k: int | None = 20) -> np.ndarray:
    """AP of each class (C,), as the starter's ``MeanAveragePrecisionCalculator``.

    With ``top_k`` (the starter's evaluation uses 20) a video only enters class c's ranking
    when c is among its top-k predictions, while the class's positives are counted over all
    videos; ``top_k=None`` ranks every video for every class (classic per-class AP).
    Classes without positives get AP 0.
    """
    predictions, labels = _check(predictions, labels)
    mask = np.ones(predictions.shape, bool) if top_k is None else _top_k_mask(predictions, top_k)
    aps = np.zeros(predictions.shape[1])
    for c in range(predictions.shape[1]):
        rows = mask[:, c]
        aps[c] = _pooled_ap(predictions[rows, c].astype(np.float64), labels[rows, c] > 0,
                            float(labels[:, c].sum()))
    return aps


def mean_average_precision(predictions: np.ndarray, labels: np.ndarray, top_k: int | None = 20) -> float:
    """Mean of :func:`average_precision_per_class` over the classes with at least one positive.

    The starter's ``eval.py`` averages over all classes, counting classes with no positives
    as 0; excluding them keeps the score meaningful on small evaluation sets where some
    classes never occur. Returns 0 if no class has a positive.
    """
    _, labels = _check(predictions, labels)
    present = labels.sum(axis=0) > 0
    if not present.any():
        return 0.0
    return float(average_precision_per_class(predictions, labels, top_k)[present].mean())
