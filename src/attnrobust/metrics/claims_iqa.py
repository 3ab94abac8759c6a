"""Claims of Feng & Cai, "Towards Robust Classification with Image Quality Assessment"
(spec/methods.md §5), checked against ``results/detect/<detector>/summary.json``.

The abstract claims that image-quality features plus knowledge distillation, without retraining
the classifier, flag the inputs that would make it egregiously wrong, poor-quality and
adversarial alike. Only the abstract could be read, and it gives no number (spec/papers.md); nor
does it report an adaptive attack, so each claim states a rule of our own: a detector "flags" a kind of input
when its ROC-AUC against clean inputs is at least :data:`USABLE_AUROC`. Positives are the
perturbed inputs the classifier gets wrong, negatives the clean inputs it gets right
(:mod:`attnrobust.detect.evaluate`). The adaptive attack targets classifier and detector
together, so its claim is the one that says whether the defence holds against an attacker who
knows it.

In ``claims:`` an entry names the detector: ``iqa_kd: [{detector: gtsrb_iqa_kd}]``; the
summaries passed to :func:`attnrobust.metrics.claims.evaluate_claims` must then include the
detector summaries under their names.
"""
from __future__ import annotations

from attnrobust.metrics.claims_base import auroc_comparison, unreliable_flag

UNTESTED = "an AUROC threshold: its test needs results/detect/<detector>/per_sample.npz"

USABLE_AUROC = 0.9  # our bar for "the detector flags these inputs" (the paper gives no number)
PAPER = ('abstract only, no number: IQA + knowledge distillation, with the classifier not retrained, flags '
         'inputs that would make it egregiously wrong; "the detector can effectively identify poor quality and '
         'adversarial images"')


def _auroc_text(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def _holds(value: float | None) -> bool:
    return value is not None and value >= USABLE_AUROC


def _defined(s: dict, row) -> bool:
    """Whether ``row(summary)``'s AUROC is defined for every seed's detector (a seed whose teacher
    is never fooled has none), so that the pooled AUROC test can run on all of them."""
    return all(row(seed)["auroc"] is not None for seed in s.get("per_seed") or [s])


def pgd_detected(s: dict) -> dict:
    """Non-adaptive: PGD on the classifier alone at the headline eps, stopped at the first step that
    fools it (``pgd``) and run to the end (``pgd_full``); the claim needs both."""
    eps = str(s["eps"])
    rows = {kind: s["attacks"][kind][eps] for kind in ("pgd", "pgd_full") if kind in s["attacks"]}
    text = "; ".join(f"{kind}: AUROC {_auroc_text(r['auroc'])}, TPR at 5% FPR {_auroc_text(r['tpr_at_5fpr'])}, "
                     f"attack success (misclassified and accepted) {r['success']:.3f}" for kind, r in rows.items())
    return {"claim": f"the detector flags PGD adversarial examples at eps {s['eps']} (AUROC >= {USABLE_AUROC})",
            "paper": PAPER,
            "ours": f"{text} (n={s['n']})" + unreliable_flag(s),
            "holds": all(_holds(r["auroc"]) for r in rows.values()),
            "comparisons": [auroc_comparison(s["detector"], [f"{kind}@{eps}"], USABLE_AUROC, f"{kind} AUROC")
                            for kind in rows if _defined(s, lambda seed, k=kind: seed["attacks"][k][eps])],
            "untested": UNTESTED}


def adaptive_detected(s: dict) -> dict:
    """Adaptive: PGD on the classifier's margin and the detector's score together."""
    ad, row = s["adaptive"], s["attacks"]["pgd"][str(s["eps"])]
    return {"claim": f"the detector still flags PGD at eps {s['eps']} when the attack targets classifier and "
                     f"detector together (AUROC >= {USABLE_AUROC})",
            "paper": PAPER + "; no adaptive attack reported",
            "ours": f"adaptive AUROC {_auroc_text(ad['auroc'])} vs {_auroc_text(row['auroc'])} non-adaptive; "
                    f"honest success (misclassified and accepted at 5% FPR) {ad['success']:.3f} vs "
                    f"{row['success']:.3f}" + unreliable_flag(s),
            "holds": _holds(ad["auroc"]),
            "comparisons": [auroc_comparison(s["detector"], [f"adaptive@{s['eps']}"], USABLE_AUROC, "adaptive AUROC")]
            if _defined(s, lambda seed: seed["adaptive"]) else [],
            "untested": UNTESTED}


def corruptions_detected(s: dict) -> dict:
    """Poor-quality inputs: every corruption family at every severity the classifier fails on."""
    rows = {f"{family}@{sev}": r["auroc"] for family, by_sev in s["corruptions"].items() for sev, r in by_sev.items()}
    measured = [v for v in rows.values() if v is not None]
    testable = [k for k in rows if _defined(s, lambda seed, k=k: seed["corruptions"][k.split("@")[0]][k.split("@")[1]])]
    text = ", ".join(f"{k} {_auroc_text(v)}" for k, v in rows.items())
    return {"claim": f"the detector flags poor-quality inputs the classifier gets wrong (mean AUROC over "
                     f"corruptions >= {USABLE_AUROC})",
            "paper": PAPER,
            "ours": f"AUROC {text}" + unreliable_flag(s),
            "holds": bool(measured) and sum(measured) / len(measured) >= USABLE_AUROC,
            "comparisons": [auroc_comparison(s["detector"], testable, USABLE_AUROC, "mean AUROC over corruptions")]
            if testable else [],
            "untested": UNTESTED}


def iqa_claims(summaries: dict[str, dict], detector: str) -> list[dict]:
    """``[{claim, paper, ours, holds}]`` for one detector, from ``{name: detect summary.json}``."""
    s = {**summaries[detector], "detector": detector}  # the name its per-sample scores are found under
    return [pgd_detected(s), adaptive_detected(s), corruptions_detected(s)]
