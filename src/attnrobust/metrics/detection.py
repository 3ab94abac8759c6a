"""Detection scores: ROC-AUC, TPR at a fixed FPR, ROC curves, and the detector metrics tables.

Convention everywhere: a higher score means "more likely positive" (flagged), and an input is
flagged when its score is *strictly above* the threshold. AUROC is the Mann-Whitney statistic,
``P(s_pos > s_neg) + P(s_pos = s_neg) / 2``, computed from average ranks, so ties count one half
(a constant score has AUROC 0.5 exactly) and it equals the trapezoidal area under
:func:`roc_curve`.

Functions for ``stages/metrics.py``: :func:`read_detect_summaries`, :func:`detection_headline`
(``{detector: {metric: value}}``, shallow, for ``dvc metrics diff``) and :func:`write_roc`
(``curve,fpr,tpr`` long CSV for a ``dvc plots`` definition).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from attnrobust.errors import UserError


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``, ties sharing the average of their ranks (scipy's rankdata)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)
    return (last - (counts - 1) / 2.0)[inverse]


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Area under the ROC curve of scores ``pos`` (positives) against ``neg``; NaN if either is empty."""
    pos, neg = np.asarray(pos, np.float64).ravel(), np.asarray(neg, np.float64).ravel()
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = _average_ranks(np.concatenate([pos, neg]))
    u = ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def threshold_at_fpr(neg: np.ndarray, fpr: float) -> float:
    """The lowest threshold ``t`` at which at most ``fpr`` of the negatives score above ``t``
    (flagged = score > t). Flagging more than that share of ``neg`` is never allowed, so the
    realised FPR is at most ``fpr`` (less where negatives tie at ``t``)."""
    neg = np.sort(np.asarray(neg, np.float64).ravel())
    if len(neg) == 0:
        raise ValueError("no negatives to set a threshold on")
    allowed = int(math.floor(fpr * len(neg) + 1e-9))  # false positives tolerated
    return float(neg[len(neg) - allowed - 1]) if allowed < len(neg) else -math.inf


def tpr_at_fpr(pos: np.ndarray, neg: np.ndarray, fpr: float = 0.05) -> float:
    """The highest TPR of a threshold whose FPR on ``neg`` is at most ``fpr``; NaN if ``pos`` is empty."""
    pos = np.asarray(pos, np.float64).ravel()
    if len(pos) == 0 or len(np.asarray(neg).ravel()) == 0:
        return float("nan")
    return float((pos > threshold_at_fpr(neg, fpr)).mean())


def roc_curve(pos: np.ndarray, neg: np.ndarray, max_points: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) from (0, 0) to (1, 1), one point per distinct score (flag when score >= it).

    With ``max_points`` > 1 the curve is thinned to at most that many points, always keeping
    both ends and the points nearest to evenly spaced positions along it, so plots stay small.
    """
    pos, neg = np.asarray(pos, np.float64).ravel(), np.asarray(neg, np.float64).ravel()
    if len(pos) == 0 or len(neg) == 0:  # undefined: the chance diagonal, as AUROC's NaN is drawn
        return np.array([0.0, 1.0]), np.array([0.0, 1.0])
    thresholds = np.unique(np.concatenate([pos, neg]))[::-1]  # descending
    tpr = np.concatenate([[0.0], (pos[None, :] >= thresholds[:, None]).mean(1)])
    fpr = np.concatenate([[0.0], (neg[None, :] >= thresholds[:, None]).mean(1)])
    if max_points > 1 and len(fpr) > max_points:
        keep = np.unique(np.round(np.linspace(0, len(fpr) - 1, max_points)).astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return fpr, tpr


# ---- the tables the metrics stage writes -------------------------------------------------

HEADLINE_KEYS = ("auroc", "tpr_at_5fpr", "success")  # per headline condition, see detection_headline


def read_detect_summaries(results_dir: Path, detectors: list[str], seeds: list[int]) -> dict[str, dict]:
    """``{detector: pooled summary}`` of ``results/detect/<detector>/s<seed>/summary.json`` over the
    teacher's training seeds (:func:`attnrobust.metrics.aggregate.read_summaries`), each with
    ``detector_scores``: its seeds' ``per_sample.npz`` arrays stacked as (seeds, samples), None when
    some seed has none."""
    from attnrobust.metrics.aggregate import read_summaries, seed_dirs

    summaries = read_summaries(results_dir, detectors, seeds, stage="detect")
    for name, summary in summaries.items():
        paths = [d / "per_sample.npz" for d in seed_dirs(results_dir, name, seeds)]
        if all(p.is_file() for p in paths):
            found = []
            for path in paths:
                with np.load(path) as data:
                    found.append({k: data[k] for k in data.files})
            if any(set(f) != set(found[0]) or len(f["clean_score"]) != len(found[0]["clean_score"]) for f in found):
                raise UserError(f"{Path(results_dir) / name}: the seeds' per_sample.npz differ in conditions or samples; "
                                f"re-run `dvc repro detect@{name}`")
            summary["detector_scores"] = {k: np.stack([f[k] for f in found]) for k in found[0]}
        else:
            summary["detector_scores"] = None
    return summaries


def _round(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 4)


def detection_headline(summaries: dict[str, dict]) -> dict[str, dict]:
    """``{detector: {metric: value}}`` at the headline eps: AUROC, TPR@5%FPR and the attack's
    honest success rate (misclassified and accepted) for FGSM, PGD, random-targeted PGD and the
    adaptive attack; the mean AUROC over the corruptions; clean and accepted-clean accuracy."""
    metrics = {}
    for name, s in summaries.items():
        eps = str(s["eps"])
        row = {"eps": s["eps"], "n": s["n"], "clean_acc": _round(s["clean"]["acc"]),
               "clean_accepted_acc": _round(s["clean"]["accepted_acc"]),
               "student_agreement": _round(s["clean"]["student_agreement"])}
        for attack, by_eps in s["attacks"].items():
            row.update({f"{attack}_{k}": _round(by_eps[eps][k]) for k in HEADLINE_KEYS})
        row.update({f"adaptive_{k}": _round(s["adaptive"][k]) for k in HEADLINE_KEYS})
        corrupt = [c["auroc"] for sev in s["corruptions"].values() for c in sev.values() if c["auroc"] is not None]
        row["corruption_mean_auroc"] = _round(float(np.mean(corrupt))) if corrupt else None
        row["unreliable"] = bool(s["unreliable"])
        metrics[name] = row
    return metrics


def write_roc(path: Path, results_dir: Path, detectors: list[str], seed: int) -> list[Path]:
    """Long CSV ``curve,fpr,tpr`` (curve = ``<detector>/<condition>``) from each detector's
    ``results/detect/<detector>/s<seed>/roc.csv`` (``attack,fpr,tpr``), one seed's curves (the
    first of train.seeds: a plot of every seed's would be unreadable; the AUROC tests pool them);
    returns the file written, none without detectors."""
    rows = []
    for name in detectors:
        roc = Path(results_dir) / name / f"s{seed}" / "roc.csv"
        if not roc.is_file():
            raise UserError(f"{roc}: missing; run `dvc repro detect@{name}` first")
        with open(roc, newline="") as f:
            rows += [(f"{name}/{r['attack']}", r["fpr"], r["tpr"]) for r in csv.DictReader(f)]
    if not rows:
        return []
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["curve", "fpr", "tpr"])
        writer.writerows(rows)
    return [path]
