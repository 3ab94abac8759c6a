"""Claims of Vaishnavi et al., "Can Attention Masks Improve Adversarial Robustness?"
(spec/methods.md §2), checked against our attack summaries.

Only the abstract could be read (spec/papers.md): "On the adversarially trained classifiers, we
see an adversarial robustness increase of over 20% on MS-COCO"; a machine-written summary
(unverified) adds +21.8 on MS-COCO-IC, +9.32 (probably GTSRB) and that foreground masks beat
random ones. Each claim's ``paper`` quotes its source and says which numbers are unverified. The gain is
robust accuracy (worst case over the suite at the headline eps) of mask + PGD-AT minus PGD-AT,
in percentage points, under each threat model:

* A: the mask is part of the model, applied after the perturbation (``robust_acc``);
* B: the perturbation is restricted to the annotated foreground (``robust_acc_fg_only``).

and, against the mask-only floor (``mask: only``: the classifier sees the binary mask alone), how
much of the masked model's robust accuracy is more than its mask's outline.

Differences within ``tol = max(1 pp, 2 samples)`` count as ties, as in attacks.sanity.
"""
from __future__ import annotations

from attnrobust.metrics.claims_base import comparison
from attnrobust.metrics.claims_base import tolerance as _tol
from attnrobust.metrics.claims_base import unreliable_flag as _flag

from attnrobust.errors import UserError

THREAT_MODELS = {"A": "robust_acc", "B": "robust_acc_fg_only"}  # threat model -> summary key
COLUMNS = {"A": "worst_correct", "B": "worst_fg_only_correct"}  # threat model -> per-sample column
PAPER_GAIN = {  # dataset -> (the paper's claim, the gain in points that makes it hold)
    "coco": ('abstract: "On the adversarially trained classifiers, we see an adversarial robustness increase '
             'of over 20% on MS-COCO." (+21.8 on MS-COCO-IC per a machine-written summary, unverified)', 20.0),
    "gtsrb": ("masks + adversarial training beat adversarial training on GTSRB: +9.32 points per a "
              "machine-written summary (dataset probable; unverified; the abstract names GTSRB without a "
              "number); holds here when the gain is positive", 0.0),
}




def _compare(a: dict, b: dict, key: str, names: tuple[str, str]) -> tuple[float, str]:
    """(gain in points, text) of ``a[key]`` over ``b[key]``; both at the same headline eps."""
    if a["eps"] != b["eps"]:
        raise UserError(f"claims: {names[0]} was attacked at eps {a['eps']}, {names[1]} at eps {b['eps']}")
    gain = 100.0 * (a[key] - b[key])
    return gain, f"{key} {a[key]:.3f} ({names[0]}) vs {b[key]:.3f} ({names[1]}): {gain:+.1f} pp at eps {a['eps']}"


def mask_gain(summaries: dict[str, dict], dataset: str, masked_at: str, baseline_at: str, threat: str) -> dict:
    """Gain of mask + PGD-AT over PGD-AT at the headline eps under threat model ``threat`` (A or B)."""
    paper, needed = PAPER_GAIN[dataset]
    a, b = summaries[masked_at], summaries[baseline_at]
    gain, text = _compare(a, b, THREAT_MODELS[threat], (masked_at, baseline_at))
    gains = f"gains > {needed:g} points of robust accuracy over" if needed else "is more robust than"
    return {"claim": f"{dataset}: foreground mask + PGD-AT {gains} PGD-AT at the headline eps (threat model {threat})",
            "paper": paper, "ours": text + _flag(a, b),
            "holds": gain > needed + 100.0 * _tol(min(a["n"], b["n"])),
            "comparisons": [comparison(masked_at, baseline_at, COLUMNS[threat], needed / 100.0, f"threat {threat}")]}


def foreground_beats_random(summaries: dict[str, dict], dataset: str, masked_at: str, random_at: str) -> dict:
    """The control: foreground masks beat random masks of the same area (both with PGD-AT, threat model A)."""
    a, b = summaries[masked_at], summaries[random_at]
    gain, text = _compare(a, b, "robust_acc", (masked_at, random_at))
    return {"claim": f"{dataset}: foreground masks beat random masks of the same area (PGD-AT, threat model A)",
            "paper": "no number: foreground masks beat random masks (a machine-written summary; unverified)",
            "ours": text + _flag(a, b),
            "holds": gain > 100.0 * _tol(min(a["n"], b["n"])),
            "comparisons": [comparison(masked_at, random_at, COLUMNS["A"], 0.0, "threat A")]}


def over_the_floor(summaries: dict[str, dict], dataset: str, masked_at: str, mask_only: str) -> dict:
    """The floor: mask + PGD-AT beats the mask-only model (the binary mask, no pixels), which no
    threat-model-A attack can move. Whatever a mask model's robust accuracy has below the floor's
    is the mask's outline speaking, not robustness the defence adds to the image."""
    a, b = summaries[masked_at], summaries[mask_only]
    gain, text = _compare(a, b, "robust_acc", (masked_at, mask_only))
    return {"claim": f"{dataset}: foreground mask + PGD-AT is more robust than the mask alone (mask-only floor, "
                     "threat model A)",
            "paper": "no number: the paper has no mask-only control (ours; spec/methods.md §2)",
            "ours": text + _flag(a, b),
            "holds": gain > 100.0 * _tol(min(a["n"], b["n"])),
            "comparisons": [comparison(masked_at, mask_only, COLUMNS["A"], 0.0, "threat A, over the floor")]}


def fgmask_claims(summaries: dict[str, dict], dataset: str, masked_at: str, baseline_at: str,
                  random_at: str | None = None, mask_only: str | None = None) -> list[dict]:
    """``[{claim, paper, ours, holds}]`` for ``dataset`` ("coco" or "gtsrb"), from ``{exp: summary.json}``.

    ``masked_at``: the fgmask experiment with ``mask: foreground, adversarial: true``;
    ``baseline_at``: the ``pgd_at`` experiment of the same trunk and data; ``random_at``: the
    ``mask: random, adversarial: true`` control and ``mask_only`` the ``mask: only`` floor (each
    one's claim is left out when None).
    """
    if dataset not in PAPER_GAIN:
        raise UserError(f"claims: no fgmask claim for dataset '{dataset}' (known: {', '.join(PAPER_GAIN)})")
    missing = [e for e in (masked_at, baseline_at, random_at, mask_only) if e is not None and e not in summaries]
    if missing:
        raise UserError(f"claims: no attack summary for {', '.join(missing)}; add the experiment(s) to params.yaml")
    claims = [mask_gain(summaries, dataset, masked_at, baseline_at, threat) for threat in THREAT_MODELS]
    if random_at is not None:
        claims.append(foreground_beats_random(summaries, dataset, masked_at, random_at))
    if mask_only is not None:
        claims.append(over_the_floor(summaries, dataset, masked_at, mask_only))
    return claims
