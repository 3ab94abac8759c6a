"""detect@<name>: evaluate an ``iqa_kd`` detector against attacks on its teacher and against corruptions.

On a seeded subset of the test split (``attack.n_samples``, ``attack.seed``), every condition
perturbs each clean image once:

* FGSM, PGD and random-targeted PGD on the teacher at every eps of ``attack.eps_sweep`` and
  ``attack.eps`` (the suite's settings: ``attack.steps``, ``step_factor``, ``restarts``, ``eot_samples``); these
  attacks ignore the detector. As in the suite, PGD stops a sample at the first step that fools
  the teacher, so its examples are barely misclassified, which the detector's confidence
  features notice. ``pgd_full`` (headline eps only, one restart) runs every step instead: an
  attacker who ignores the detector but keeps going leaves confidently wrong examples, which
  a detector leaning on confidence misses (with ``fit.l2: 0.001`` on the default data: AUROC
  0.85 early-stopped, 0.58 run to the end);
* each corruption family at each severity of ``detectors.<name>.corruptions``;
* the adaptive attack at ``attack.eps`` (:class:`attnrobust.detect.config.AdaptiveConfig`):
  PGD on the teacher's margin and the detector's score together, through the differentiable NSS
  features and student, stopping a sample once it is misclassified *and* accepted.

Per condition (definitions, for ``summary.json``):

* ``auroc``, ``tpr_at_5fpr``: negatives are the clean images the teacher classifies correctly,
  positives the perturbed versions of those same images that the teacher gets wrong -- the inputs
  Feng & Cai want flagged. ``*_all``: all clean images against all perturbed ones.
* The operating threshold is set once, on the clean subset: at most 5% of clean images are
  rejected (``threshold``). At it: ``accepted`` (share of perturbed inputs accepted),
  ``accepted_acc`` (teacher accuracy on them), ``success`` (share of all n samples that are
  misclassified *and* accepted: the attack's honest success rate against teacher + detector).
* ``teacher_acc``: the teacher's accuracy under the condition, detector ignored.

The adaptive attack stops each sample just below the operating threshold, so its ``auroc`` only
says how far below it the attacker had to go; at the operating point ``tpr_at_5fpr`` and
``success`` are the numbers that count. ``success_worst`` also counts the samples that PGD
ignoring the detector already got through.

Sanity checks follow :mod:`attnrobust.attacks.sanity`: the adaptive attack must be no weaker
than PGD that ignores the detector, the detector must have non-zero input gradients and give the
same scores twice.
"""
from __future__ import annotations

import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from attnrobust import distributed
from attnrobust.attacks.engine import Engine, ThreatModel, fp32
from attnrobust.attacks.pgd import random_targets
from attnrobust.attacks.sanity import check, tolerance
from attnrobust.attacks.suite import AttackConfig, select_subset
from attnrobust.data.prepared import load_prepared
from attnrobust.detect.build import _check_dataset, load_detector, load_teacher
from attnrobust.detect.config import DetectorSpec
from attnrobust.detect.corruptions import corrupt
from attnrobust.detect.detector import IQAKDDetector
from attnrobust.detect.distill import agreement
from attnrobust.io import replace_dir, save_npz, write_json
from attnrobust.metrics.detection import auroc, roc_curve, threshold_at_fpr, tpr_at_fpr
from attnrobust.runtime import resolve_device

FPR = 0.05  # the operating point: at most 5% of clean inputs rejected
ROC_POINTS = 41  # points kept per ROC curve in roc.csv


@dataclass
class Outcome:
    """Teacher prediction and detector score for every sample of one condition."""

    pred: Tensor  # (n,) teacher top-1
    score: Tensor  # (n,) detector score, higher = reject


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, start + batch_size)


@torch.no_grad()
def observe(detector: IQAKDDetector, x: Tensor, device, batch_size: int) -> Outcome:
    preds, scores = [], []
    for s in _batches(len(x), batch_size):
        logits, score = detector.joint(x[s].to(device))
        preds.append(logits.argmax(1).cpu())
        scores.append(score.float().cpu())
    return Outcome(torch.cat(preds), torch.cat(scores))


def condition_metrics(clean: Outcome, perturbed: Outcome, y: Tensor, threshold: float) -> dict:
    """The numbers of one condition (see the module docstring for their definitions)."""
    clean_ok = clean.pred == y
    fooled = clean_ok & (perturbed.pred != y)
    neg, pos = clean.score[clean_ok].numpy(), perturbed.score[fooled].numpy()
    accepted = perturbed.score <= threshold
    return {
        "auroc": _num(auroc(pos, neg)), "tpr_at_5fpr": _num(tpr_at_fpr(pos, neg, FPR)),
        "auroc_all": _num(auroc(perturbed.score.numpy(), clean.score.numpy())),
        "tpr_at_5fpr_all": _num(tpr_at_fpr(perturbed.score.numpy(), clean.score.numpy(), FPR)),
        "n_positive": int(fooled.sum()), "n_negative": int(clean_ok.sum()),
        "teacher_acc": _mean(perturbed.pred == y), "accepted": _mean(accepted),
        "accepted_acc": _mean((perturbed.pred == y)[accepted]),
        "success": _mean((perturbed.pred != y) & accepted),
        "detected_at_threshold": _mean(~accepted[fooled]),
    }


def _mean(mask: Tensor) -> float | None:
    return float(mask.float().mean()) if len(mask) else None


def _num(value: float) -> float | None:
    return None if np.isnan(value) else value


class _TeacherAndScore(nn.Module):
    """(N, C + 1): the teacher's logits and, last, the detector score, so PGD sees both at once."""

    def __init__(self, detector: IQAKDDetector) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, x: Tensor) -> Tensor:
        logits, score = self.detector.joint(x)
        return torch.cat([logits, score[:, None].to(logits.dtype)], dim=1)


def _margin(logits: Tensor, y: Tensor) -> Tensor:
    """True-class logit minus the best other logit: > 0 where the teacher is right."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    return true - logits.scatter(1, y[:, None], float("-inf")).max(1).values


def adaptive_loss(weight: float, threshold: float):
    """Ascended by PGD: each hinge stops pulling once its goal (misclassified; accepted) is met."""
    def loss(out: Tensor, y: Tensor) -> Tensor:
        logits, score = out[:, :-1], out[:, -1]
        return -(_margin(logits, y).clamp_min(0) + weight * (score - threshold).clamp_min(0)).sum()

    return loss


def adaptive_success(threshold: float):
    def success(out: Tensor, y: Tensor) -> Tensor:
        return (out[:, :-1].argmax(1) != y) & (out[:, -1] <= threshold)

    return success


def adaptive_attack(detector: IQAKDDetector, x: Tensor, y: Tensor, cfg: AttackConfig, *, steps: int,
                    weights: list[float], threshold: float, device, generator: torch.Generator) -> Tensor:
    """PGD against teacher + detector at ``attack.eps``, one run per weight; per sample the best run
    wins: misclassified and accepted first, then misclassified with the lowest score, then lowest score."""
    engine = Engine(_TeacherAndScore(detector), x, y, cfg, device=device, generator=generator, desc="adaptive")
    best, best_key = x.clone(), torch.full((len(x),), -np.inf, dtype=torch.float64)
    for weight in weights:
        threat = ThreatModel(loss_fn=adaptive_loss(weight, threshold), success_fn=adaptive_success(threshold))
        x_adv = engine.attack(eps=cfg.eps, steps=steps, threat=threat)
        out = engine.read(x_adv, fp32)
        wrong, score = out[:, :-1].argmax(1) != y, out[:, -1].double()
        key = 1e6 * (wrong & (score <= threshold)).double() + 1e3 * wrong.double() - score.clamp(-999, 999)
        better = key > best_key
        best[better] = x_adv[better]
        best_key = torch.where(better, key, best_key)
    return best


def _attack_teacher(kind: str, engine: Engine, eps_levels: int, targets: Tensor) -> Tensor:
    """FGSM, PGD or random-targeted PGD on the teacher alone (the detector is ignored); ``pgd_full``:
    PGD that never stops early, run once (without a success test a restart could not replace it)."""
    cfg = engine.cfg
    if kind == "fgsm":
        return engine.attack(eps=eps_levels, steps=1, step_factor=1.0, random_start=False)
    if kind == "pgd_full":
        return engine.attack(eps=eps_levels, steps=cfg.steps, restarts=1, threat=ThreatModel(success_fn=_never))
    return engine.attack(eps=eps_levels, steps=cfg.steps, targets=targets if kind == "pgd_targeted" else None)


def _never(logits: Tensor, y: Tensor) -> Tensor:
    return torch.zeros(len(y), dtype=torch.bool, device=y.device)


def _gradient_check(detector: IQAKDDetector, x: Tensor, device, batch_size: int) -> dict:
    zero = 0
    for s in _batches(len(x), batch_size):
        xb = x[s].to(device).requires_grad_(True)
        with torch.enable_grad():
            grad = torch.autograd.grad(detector(xb).sum(), xb)[0]
        zero += int((grad.abs().flatten(1).sum(1) == 0).sum())
    return check(zero == 0, zero, "no sample has an all-zero input gradient of the detector score")


class _Conditions:
    """Scores one perturbed copy of the subset at a time against the clean subset; keeps ROC rows."""

    def __init__(self, detector: IQAKDDetector, x: Tensor, y: Tensor, device, batch_size: int) -> None:
        self.detector, self.x, self.y, self.device, self.batch_size = detector, x, y, device, batch_size
        self.clean = observe(detector, x, device, batch_size)
        self.threshold = threshold_at_fpr(self.clean.score.numpy(), FPR)
        self.roc: list[tuple[str, str, str]] = []
        # per sample, for the claims' bootstrap of AUROC (per_sample.npz): clean outcome, and per condition
        self.per_sample = {"clean_correct": (self.clean.pred == y).numpy(), "clean_score": self.clean.score.numpy()}

    def score(self, x_perturbed: Tensor, curve: str | None = None) -> tuple[dict, Outcome]:
        """(metrics, outcome) of one condition; with ``curve``, its ROC joins roc.csv under that name."""
        perturbed = observe(self.detector, x_perturbed, self.device, self.batch_size)
        if curve is not None:
            clean_ok = self.clean.pred == self.y
            fooled = clean_ok & (perturbed.pred != self.y)
            fpr, tpr = roc_curve(perturbed.score[fooled].numpy(), self.clean.score[clean_ok].numpy(), ROC_POINTS)
            self.roc += [(curve, f"{a:.4f}", f"{b:.4f}") for a, b in zip(fpr, tpr)]
            self.per_sample[f"{curve}:fooled"] = fooled.numpy()
            self.per_sample[f"{curve}:score"] = perturbed.score.numpy()
        return condition_metrics(self.clean, perturbed, self.y, self.threshold), perturbed

    def success(self, outcome: Outcome) -> Tensor:
        return (outcome.pred != self.y) & (outcome.score <= self.threshold)


def _attack_conditions(run: _Conditions, teacher: nn.Module, cfg: AttackConfig, num_classes: int,
                       generator: torch.Generator, starts: torch.Generator) -> tuple[dict, Outcome]:
    """FGSM, PGD and random-targeted PGD on the teacher at every eps, and PGD without early stop at
    the headline eps: ({kind: {eps: metrics}}, the outcome of PGD at the headline eps)."""
    targets = random_targets(run.y, num_classes, generator)
    engine = Engine(teacher, run.x, run.y, cfg, device=run.device, generator=starts)
    out, headline_pgd = {}, None
    for kind in ("fgsm", "pgd", "pgd_targeted"):
        out[kind] = {}
        for eps in sorted({e for e in (*cfg.eps_sweep, cfg.eps) if e > 0}):
            x_adv = _attack_teacher(kind, engine, eps, targets)
            out[kind][str(eps)], outcome = run.score(x_adv, f"{kind}@{eps}" if eps == cfg.eps else None)
            if (kind, eps) == ("pgd", cfg.eps):
                headline_pgd = outcome
    x_adv = _attack_teacher("pgd_full", engine, cfg.eps, targets)
    out["pgd_full"] = {str(cfg.eps): run.score(x_adv, f"pgd_full@{cfg.eps}")[0]}
    return out, headline_pgd


def _adaptive(run: _Conditions, cfg: AttackConfig, spec: DetectorSpec, plain_pgd: Outcome,
              generator: torch.Generator) -> dict:
    """The adaptive attack at the headline eps; ``success_worst`` also counts the samples that PGD
    ignoring the detector already got through (an attacker would pick whichever works)."""
    x_adv = adaptive_attack(run.detector, run.x, run.y, cfg, steps=spec.adaptive.steps, weights=spec.adaptive.weights,
                            threshold=run.threshold, device=run.device, generator=generator)
    metrics, outcome = run.score(x_adv, f"adaptive@{cfg.eps}")
    return {"eps": cfg.eps, "steps": spec.adaptive.steps, "weights": list(spec.adaptive.weights),
            "objective": "maximise -max(margin_y, 0) - weight * max(score - threshold, 0); stop when "
                         "misclassified and accepted; per sample the best weight",
            **metrics, "success_worst": _mean(run.success(outcome) | run.success(plain_pgd))}


def evaluate_detector(name: str, spec: DetectorSpec, teacher_dir: Path, detector_dir: Path, prepared_dir: Path,
                      out_dir: Path | None, cfg: AttackConfig) -> dict:
    """Run every condition on the test subset; write ``summary.json``, ``roc.csv`` and
    ``per_sample.npz`` (per sample: ``clean_correct``, ``clean_score`` and, per condition
    ``<attack>@<eps>``, ``<condition>:fooled`` and ``<condition>:score``) to ``out_dir``.

    Under torchrun (``attack.nproc``) every process attacks its share of the samples through the
    engine and gets every read-out back; a process other than the main one passes no ``out_dir``."""
    t0 = time.perf_counter()
    teacher, teacher_spec = load_teacher(teacher_dir, spec)
    detector = load_detector(detector_dir, name, teacher, spec)
    _check_dataset(prepared_dir, spec)
    device = resolve_device(cfg.device)
    detector.to(device).eval()
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)  # targets and corruptions: the same in every process
    starts = torch.Generator().manual_seed(distributed.rank_seed(cfg.seed + 1))  # random starts: each its own
    images, labels, _ = load_prepared(prepared_dir, "test")
    index = torch.from_numpy(select_subset(len(labels), cfg.n_samples, cfg.seed))
    run = _Conditions(detector, images[index], labels[index], device, cfg.batch_size)
    clean_ok, accepted = run.clean.pred == run.y, run.clean.score <= run.threshold
    summary = {"detector": name, "teacher": spec.teacher, "dataset": spec.dataset, "n": len(run.y), "eps": cfg.eps,
               "processes": distributed.world_size(),  # that shared the attacks (attack.nproc)
               "steps": cfg.steps, "fpr": FPR, "threshold": run.threshold, "features": spec.fit.features,
               "clean": {"acc": _mean(clean_ok), "accepted": _mean(accepted), "accepted_acc": _mean(clean_ok[accepted]),
                         "student_agreement": agreement(teacher, detector.student, run.x, device)}}
    summary["attacks"], plain_pgd = _attack_conditions(run, teacher, cfg, teacher_spec["kwargs"]["num_classes"],
                                                       generator, starts)
    summary["corruptions"] = {family: {f"{sev:g}": run.score(corrupt(run.x, family, sev, generator),
                                                             f"{family}@{sev:g}")[0] for sev in severities}
                              for family, severities in spec.corruptions.items()}
    summary["adaptive"] = _adaptive(run, cfg, spec, plain_pgd, starts)
    summary["sanity"] = _sanity(run, summary, cfg)
    summary["unreliable"] = not all(c["passed"] for c in summary["sanity"].values())
    summary["headline"] = {"pgd_auroc": summary["attacks"]["pgd"][str(cfg.eps)]["auroc"],
                           "adaptive_auroc": summary["adaptive"]["auroc"]}
    if out_dir is None:
        return summary
    with replace_dir(out_dir) as staging:
        write_json(staging / "summary.json", summary)
        with open(staging / "roc.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["attack", "fpr", "tpr"])
            writer.writerows(run.roc)
        save_npz(staging / "per_sample.npz", **run.per_sample)
    _report(summary, time.perf_counter() - t0)
    return summary


def _sanity(run: _Conditions, summary: dict, cfg: AttackConfig) -> dict:
    tol = tolerance(summary["n"])
    plain = summary["attacks"]["pgd"][str(cfg.eps)]["success"]
    adaptive = summary["adaptive"]["success"]
    again = observe(run.detector, run.x, run.device, cfg.batch_size)
    return {
        "adaptive_no_weaker": check(adaptive >= plain - tol, [adaptive, plain],
                                     f"success(adaptive) >= success(PGD ignoring the detector) - {tol:.3f}"),
        "detector_gradients_nonzero": _gradient_check(run.detector, run.x, run.device, cfg.batch_size),
        "deterministic": check(torch.allclose(again.score, run.clean.score, atol=1e-4),
                                float((again.score - run.clean.score).abs().max()) if len(run.y) else 0.0,
                                "two passes give the same detector scores (atol 1e-4)"),
    }


def _report(s: dict, seconds: float) -> None:
    eps = str(s["eps"])
    pgd_row, ad = s["attacks"]["pgd"][eps], s["adaptive"]
    fmt = lambda v: "undefined" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"[detect {s['detector']}] n={s['n']} clean acc {fmt(s['clean']['acc'])} (accepted "
          f"{fmt(s['clean']['accepted_acc'])}); PGD@{eps} AUROC {fmt(pgd_row['auroc'])} success "
          f"{fmt(pgd_row['success'])}; adaptive AUROC {fmt(ad['auroc'])} success {fmt(ad['success'])}"
          f"{' UNRELIABLE' if s['unreliable'] else ''} ({seconds:.1f}s)", file=sys.stderr)
