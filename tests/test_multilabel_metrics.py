"""GAP@k, Hit@1 and mAP against hand-computed cases and a literal port of the YouTube-8M starter code."""
from __future__ import annotations

import heapq
import random

import numpy as np
import pytest

from attnrobust.metrics.multilabel import (
    average_precision_per_class,
    gap_at_k,
    hit_at_1,
    mean_average_precision,
)

# ---------------------------------------------------------------- literal port of google/youtube-8m
# eval_util.top_k_triplets / top_k_by_class / flatten / calculate_gap and
# average_precision_calculator.AveragePrecisionCalculator.accumulate (its heapq heap) /
# peek_ap_at_n / ap_at_n (+ _shuffle), google/youtube-8m 686a443, Python 3 syntax.


def _flatten(lists):
    return [item for sublist in lists for item in sublist]


def _top_k_triplets(predictions, labels, k=20):
    m = len(predictions)
    k = min(k, m)
    indices = np.argpartition(predictions, -k)[-k:]
    return [(index, predictions[index], labels[index]) for index in indices]


def _top_k_by_class(predictions, labels, k=20):
    k = min(k, predictions.shape[1])
    num_classes = predictions.shape[1]
    triplets = []
    for video_index in range(predictions.shape[0]):
        triplets.extend(_top_k_triplets(predictions[video_index], labels[video_index], k))
    out_predictions = [[] for _ in range(num_classes)]
    out_labels = [[] for _ in range(num_classes)]
    for triplet in triplets:
        out_predictions[triplet[0]].append(triplet[1])
        out_labels[triplet[0]].append(triplet[2])
    out_true_positives = [np.sum(labels[:, i]) for i in range(num_classes)]
    return out_predictions, out_labels, out_true_positives


def _ap_at_n(predictions, actuals, n=20, total_num_positives=None):
    ap = 0.0
    predictions = np.array(predictions)
    actuals = np.array(actuals)
    random.seed(0)  # the starter's _shuffle: reseeds the global generator
    suffidx = random.sample(range(len(predictions)), len(predictions))
    predictions = predictions[suffidx]
    actuals = actuals[suffidx]
    sortidx = sorted(range(len(predictions)), key=lambda k: predictions[k], reverse=True)
    numpos = np.size(np.where(actuals > 0)) if total_num_positives is None else total_num_positives
    if numpos == 0:
        return 0
    if n is not None:
        numpos = min(numpos, n)
    delta_recall = 1.0 / numpos
    poscount = 0.0
    r = len(sortidx) if n is None else min(len(sortidx), n)
    for i in range(r):
        if actuals[sortidx[i]] > 0:
            poscount += 1
            ap += poscount / (i + 1) * delta_recall
    return ap


class _AveragePrecisionCalculator:
    def __init__(self, top_n=None):
        self._top_n, self._total_positives, self._heap = top_n, 0, []

    def accumulate(self, predictions, actuals, num_positives=None):
        self._total_positives += num_positives if num_positives is not None else np.size(np.where(actuals > 0))
        topk, heap = self._top_n, self._heap
        for i in range(np.size(predictions)):
            if topk is None or len(heap) < topk:
                heapq.heappush(heap, (predictions[i], actuals[i]))
            elif predictions[i] > heap[0][0]:
                heapq.heappop(heap)
                heapq.heappush(heap, (predictions[i], actuals[i]))

    def peek_ap_at_n(self):
        if len(self._heap) <= 0:
            return 0
        predlists = np.array(list(zip(*self._heap)))
        return _ap_at_n(predlists[0], predlists[1], n=self._top_n, total_num_positives=self._total_positives)


def starter_gap(predictions, actuals, top_k=20):
    """eval_util.calculate_gap: AveragePrecisionCalculator() (top_n=None) over the flattened top-k."""
    calculator = _AveragePrecisionCalculator()
    sparse_predictions, sparse_labels, num_positives = _top_k_by_class(predictions, actuals, top_k)
    calculator.accumulate(_flatten(sparse_predictions), _flatten(sparse_labels), sum(num_positives))
    return calculator.peek_ap_at_n()


def starter_class_aps(predictions, actuals, top_k=20):
    """MeanAveragePrecisionCalculator.peek_map_at_n after accumulating the top-k by class."""
    sparse_predictions, sparse_labels, num_positives = _top_k_by_class(predictions, actuals, top_k)
    aps = []
    for p, a, n in zip(sparse_predictions, sparse_labels, num_positives):
        calculator = _AveragePrecisionCalculator()
        calculator.accumulate(p, a, n)
        aps.append(calculator.peek_ap_at_n())
    return aps


def _without_heap_gap(predictions, actuals, top_k=20):
    """What the project computed before: the same, minus the heap (the flattened order shuffled)."""
    sparse_predictions, sparse_labels, num_positives = _top_k_by_class(predictions, actuals, top_k)
    return _ap_at_n(_flatten(sparse_predictions), _flatten(sparse_labels), n=None,
                    total_num_positives=sum(num_positives))


@pytest.fixture
def keep_global_random():
    state = random.getstate()
    yield
    random.setstate(state)

# ---------------------------------------------------------------- tests


def test_perfect_ranking_scores_one():
    labels = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
    predictions = labels * 0.5 + 0.25  # every positive above every negative, across videos too
    assert gap_at_k(predictions, labels, k=2) == pytest.approx(1.0)
    assert hit_at_1(predictions, labels) == 1.0
    assert mean_average_precision(predictions, labels) == pytest.approx(1.0)


def test_positives_beyond_top_k_cap_gap_below_one():
    """The spec's case: 25 + 3 positives, perfect scores, k=20 -> only 20 + 3 can be found: 23/28."""
    num_classes = 40
    labels = np.zeros((2, num_classes), int)
    labels[0, :25] = 1
    labels[1, :3] = 1
    predictions = np.where(labels == 1, 0.9, 0.1) - np.arange(num_classes) * 1e-3  # no ties
    assert gap_at_k(predictions, labels, k=20) == pytest.approx(23 / 28)
    single = labels[:1].copy()
    single[0, :28] = 1
    assert gap_at_k(np.where(single == 1, 0.9, 0.1), single, k=20) == pytest.approx(20 / 28)


def test_gap_hand_computed_pooled_ranking():
    # top-2 per video: v0 -> (0.9 neg, 0.8 pos), v1 -> (0.7 pos, 0.6 neg); v1's third label (0.5) is cut.
    predictions = np.array([[0.9, 0.8, 0.1], [0.7, 0.6, 0.5]])
    labels = np.array([[0, 1, 0], [1, 0, 1]])
    # pooled ranking: neg, pos (P=1/2), pos (P=2/3), neg; divided by all 3 positives
    assert gap_at_k(predictions, labels, k=2) == pytest.approx((1 / 2 + 2 / 3) / 3)


def test_no_positives_scores_zero():
    predictions = np.random.default_rng(0).random((5, 7))
    labels = np.zeros((5, 7), int)
    assert gap_at_k(predictions, labels) == 0.0
    assert mean_average_precision(predictions, labels) == 0.0


def test_hit_at_1_counts_top_class_only():
    predictions = np.array([[0.1, 0.9, 0.3], [0.8, 0.1, 0.7], [0.2, 0.3, 0.4]])
    labels = np.array([[0, 1, 1], [0, 0, 1], [1, 1, 1]])
    assert hit_at_1(predictions, labels) == pytest.approx(2 / 3)


def _scores(rng, kind: str, n: int, c: int) -> np.ndarray:
    """continuous; tied (few distinct, as 8-bit quantised scores); saturated float32 sigmoids (many exactly 1.0)."""
    if kind == "continuous":
        return rng.random((n, c)).astype(np.float32)
    if kind == "tied":
        return (np.round(rng.random((n, c)) * 3) / 3).astype(np.float32)
    logits = rng.normal(0, 12, (n, c)).astype(np.float32)  # |logit| > 17 -> exactly 1.0 in float32
    return (1 / (1 + np.exp(-logits.astype(np.float32)))).astype(np.float32)


@pytest.mark.parametrize("kind", ["continuous", "tied", "saturated"])
def test_matches_starter_code_on_random_data(kind, keep_global_random):
    rng = np.random.default_rng({"continuous": 1, "tied": 2, "saturated": 3}[kind])
    for _ in range(20):
        n, c, k = int(rng.integers(1, 40)), int(rng.integers(2, 60)), int(rng.integers(1, 25))
        predictions = _scores(rng, kind, n, c)
        labels = (rng.random((n, c)) < 0.15).astype(np.int64)
        assert gap_at_k(predictions, labels, k) == pytest.approx(starter_gap(predictions, labels, k), abs=1e-6)
        np.testing.assert_allclose(average_precision_per_class(predictions, labels, k),
                                   starter_class_aps(predictions, labels, k), atol=1e-6)


def test_the_heap_is_what_makes_ties_agree(keep_global_random):
    """Without the starter's heap the pooled order of tied scores differs, and so does GAP (by up to
    0.04 on saturated scores): the check above would not pass with the flattened order."""
    rng = np.random.default_rng(7)
    worst = 0.0
    for _ in range(30):
        predictions = _scores(rng, "saturated", 30, 40)
        labels = (rng.random((30, 40)) < 0.1).astype(np.int64)
        worst = max(worst, abs(_without_heap_gap(predictions, labels) - starter_gap(predictions, labels)))
        assert gap_at_k(predictions, labels) == pytest.approx(starter_gap(predictions, labels), abs=1e-6)
    assert worst > 1e-3


def test_gap_leaves_global_random_untouched():
    random.seed(123)
    expected = random.random()
    random.seed(123)
    gap_at_k(np.random.default_rng(0).random((4, 30)), np.eye(4, 30, dtype=int))
    assert random.random() == expected


def test_map_ignores_classes_without_positives():
    predictions = np.array([[0.9, 0.2, 0.5], [0.1, 0.8, 0.4]])
    labels = np.array([[1, 0, 0], [0, 1, 0]])  # class 2 never occurs
    assert mean_average_precision(predictions, labels, top_k=None) == pytest.approx(1.0)
    # class 0 ranked second behind a negative: AP = 1/2; class 1 perfect
    worse = np.array([[0.3, 0.2, 0.5], [0.9, 0.8, 0.4]])
    assert mean_average_precision(worse, labels, top_k=None) == pytest.approx((1 / 2 + 1) / 2)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError):
        gap_at_k(np.zeros((2, 3)), np.zeros((3, 2)))
