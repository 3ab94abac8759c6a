"""The claims table: each paper's claim, its number, ours, and whether the direction holds.

Which experiments a claim compares is configured in params.yaml ``claims:``, one list of keyword
arguments per claim family, e.g.::

    claims:
      fgmask:
        - {dataset: coco, masked_at: coco_fgmask_at, baseline_at: coco_pgd_at, random_at: coco_rndmask_at}

Differences within ``tol = max(1 pp, 2 samples)`` count as ties, as in the sanity checks, and a
claim resting on an evaluation that failed a sanity check says so.
"""
from __future__ import annotations

from collections.abc import Callable

from attnrobust.errors import UserError
from attnrobust.metrics.claims_base import (UNRELIABLE_TEXT, gap_comparison, run_paper_tests, tolerance,
                                            unreliable_flag, with_reliability)
from attnrobust.metrics.claims_fgmask import fgmask_claims
from attnrobust.metrics.claims_iqa import iqa_claims
from attnrobust.metrics.claims_protoattn import protoattn_claims
from attnrobust.metrics.claims_s3ta import s3ta_claims

__all__ = ["UNRELIABLE_TEXT", "evaluate_claims", "tolerance", "unreliable_flag", "with_reliability"]


def a_art_claims(summaries: dict[str, dict], a_art: str, pgd_at: str, plain: str, noreg: str | None = None) -> list[dict]:
    """Choudhary et al.: under attack A-ART keeps most of its GAP, a plain Transformer collapses and
    PGD adversarial training recovers part; ``noreg`` (beta = 0) isolates the regulariser."""
    a, at, p = summaries[a_art], summaries[pgd_at], summaries[plain]
    tol = tolerance(min(a["n"], at["n"], p["n"]))
    text = (f"GAP@20 clean -> PGD: A-ART {a['clean_gap']:.3f} -> {a['pgd_gap']:.3f}, PGD-AT {at['clean_gap']:.3f} -> "
            f"{at['pgd_gap']:.3f}, plain {p['clean_gap']:.3f} -> {p['pgd_gap']:.3f}")
    claims = [{"claim": "A-ART > PGD-AT > plain Transformer in GAP under attack",
               "paper": 'abstract: "We achieve 91% GAP on adversarial examples, whereas baseline Transformer and '
                        'simple adversarial extensions achieve 72.9% and 82% respectively" (YouTube-8M)',
               "ours": text + unreliable_flag(a, at, p),
               "holds": a["pgd_gap"] > at["pgd_gap"] + tol and at["pgd_gap"] > p["pgd_gap"] + tol,
               "comparisons": [
                   gap_comparison(a_art, pgd_at, "worst", 0.0, "GAP@20, per-video worst case: A-ART vs PGD-AT"),
                   gap_comparison(pgd_at, plain, "worst", 0.0, "GAP@20, per-video worst case: PGD-AT vs plain")],
               "untested": "GAP@20 needs the per-video scores (results/attack/<exp>/scores.npz)"}]
    if noreg is not None:
        n = summaries[noreg]
        claims.append({"claim": "the temporal attention regulariser itself adds robustness (beta vs. 0)",
                       "paper": "abstract only, no number: temporal attention regularisation makes the attention "
                                "modules robust",
                       "ours": f"PGD GAP {a['pgd_gap']:.3f} with the regulariser vs {n['pgd_gap']:.3f} without"
                               + unreliable_flag(a, n),
                       "holds": a["pgd_gap"] > n["pgd_gap"] + tolerance(min(a["n"], n["n"])),
                       "comparisons": [gap_comparison(a_art, noreg, "worst", 0.0,
                                                      "GAP@20, per-video worst case: with vs without the regulariser")],
                       "untested": "GAP@20 needs the per-video scores (results/attack/<exp>/scores.npz)"})
    return claims


def _families() -> dict[str, Callable[..., list[dict]]]:
    return {"fgmask": fgmask_claims, "s3ta": s3ta_claims, "a_art": a_art_claims, "protoattn": protoattn_claims,
            "iqa_kd": iqa_claims}


def evaluate_claims(summaries: dict[str, dict], config: dict[str, list[dict]]) -> dict[str, dict]:
    """``{"<family>/<i>/<j>": {claim, paper, ours, direction, verdict, p_holm, tests, unreliable}}``
    for every configured claim whose experiments all have summaries (claims on experiments not in
    params.yaml are left out). A family is one paper: its claims' paired tests are Holm-corrected
    together (:func:`attnrobust.metrics.claims_base.run_paper_tests`); ``summaries[exp]["per_sample"]``
    holds the per-sample outcomes they compare."""
    families = _families()
    out = {}
    for family, entries in (config or {}).items():
        if family not in families:
            raise UserError(f"claims.{family}: unknown claim family (known: {', '.join(families)})")
        found_here: dict[str, dict] = {}
        for i, kwargs in enumerate(entries):
            if not all(v in summaries for k, v in kwargs.items() if k != "dataset" and v is not None):
                continue
            try:
                found = families[family](summaries, **kwargs)
            except TypeError as exc:
                raise UserError(f"claims.{family}[{i}]: {exc}") from exc
            rests_on = [summaries[v] for k, v in kwargs.items() if k != "dataset" and v is not None]
            for j, claim in enumerate(found):
                found_here[f"{family}/{i}/{j}"] = with_reliability(claim, rests_on)
        out.update(zip(found_here, run_paper_tests(summaries, list(found_here.values()))))
    return out
