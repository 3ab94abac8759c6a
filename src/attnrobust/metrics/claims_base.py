"""What every claim family shares: the tie tolerance and the reliability flag."""
from __future__ import annotations

import numpy as np

from attnrobust.errors import UserError
from attnrobust.metrics.paired import compare, compare_auroc, compare_gap, compare_ratio, verdicts
from attnrobust.units import tolerance  # noqa: F401  (claims and sanity checks share one tolerance)

UNRELIABLE_TEXT = " [UNRELIABLE evaluation: see sanity]"


def unreliable_flag(*summaries: dict) -> str:
    return UNRELIABLE_TEXT if any(s.get("unreliable") for s in summaries) else ""


def with_reliability(claim: dict, summaries: list[dict]) -> dict:
    """``claim`` with an explicit boolean ``unreliable``, for tables and scripts that should not
    parse text: the family's own value when it sets one (from exactly the evaluations that claim
    reads), else true when any experiment of the claim's config entry failed a sanity check. The
    text flag in ``ours`` is added when the boolean is true and the family did not write it."""
    unreliable = bool(claim.get("unreliable", any(s.get("unreliable") for s in summaries)))
    ours = claim["ours"]
    if unreliable and UNRELIABLE_TEXT not in ours:
        ours += UNRELIABLE_TEXT
    return {**claim, "ours": ours, "unreliable": unreliable}


def comparison(a: str, b: str, column: str, threshold: float, label: str, column_b: str | None = None) -> dict:
    """What a claim's paired test compares: experiment ``a``'s per-sample ``column`` against
    ``b``'s (``column_b``, default the same), claimed better by more than ``threshold``."""
    return {"a": a, "b": b, "column_a": column, "column_b": column_b or column, "threshold": threshold,
            "label": label}


def clean_comparison(a: str, b: str, threshold: float, label: str) -> dict:
    """A clean-accuracy claim's paired test on every image of the test split (``clean_test.npz``),
    not only the attacked subset: ``a`` claimed more accurate than ``b`` by more than ``threshold``."""
    return {"a": a, "b": b, "statistic": "clean_test", "threshold": threshold, "label": label}


def gap_comparison(a: str, b: str, scores: str, threshold: float, label: str) -> dict:
    """A claim's GAP test: experiment ``a``'s per-video ``<scores>_scores`` (scores.npz) against
    ``b``'s on the same videos, GAP@20 claimed higher by more than ``threshold`` (paired bootstrap
    over seeds and videos)."""
    return {"a": a, "b": b, "statistic": "gap", "scores": scores, "threshold": threshold, "label": label}


def auroc_comparison(detector: str, conditions: list[str], threshold: float, label: str) -> dict:
    """A detector claim's test: the mean AUROC over ``conditions`` (``<attack>@<eps>`` of
    results/detect/<detector>/per_sample.npz) above ``threshold`` (a bootstrap over seeds and samples)."""
    return {"a": detector, "b": None, "statistic": "auroc", "conditions": list(conditions), "threshold": threshold,
            "label": label}


def ratio_comparison(a: str, b: str, own: str, other: str, label: str) -> dict:
    """A claim's test of ``mean(other) / mean(own)`` (per-sample columns of scores.npz), higher for
    ``a`` than for ``b`` on the same samples (paired bootstrap over seeds and samples)."""
    return {"a": a, "b": b, "statistic": "ratio", "own": own, "other": other, "threshold": 0.0, "label": label}


def race_comparison(exp: str, glances_hi: int, glances_lo: int, steps: int, label: str) -> dict:
    """A race claim's test: experiment ``exp``'s per-sample worst-case outcomes (summary
    ``race.worst_correct``, every seed) unrolled for ``glances_hi`` against ``glances_lo`` glances,
    under the race's attack of ``steps`` steps, the same samples (exact McNemar stratified by seed
    and the bootstrap over seeds and samples)."""
    return {"a": exp, "b": None, "statistic": "race", "glances": [glances_hi, glances_lo], "steps": steps,
            "threshold": 0.0, "label": label}


def race_models_comparison(a: str, b: str, glances_a: int, glances_b: int, steps: int, label: str) -> dict:
    """A race claim's test across two models: experiment ``a`` unrolled for ``glances_a`` against
    experiment ``b`` unrolled for ``glances_b`` (each at the glances it was trained with, the
    paper's race), under the race's attack of ``steps`` steps, on the same race samples."""
    return {"a": a, "b": b, "statistic": "race_models", "glances": [glances_a, glances_b], "steps": steps,
            "threshold": 0.0, "label": label}


def _race_outcomes(summary: dict) -> dict | None:
    """``(k seeds, glances, steps, n)`` per-sample race outcomes, from each seed's summary, or None."""
    per_seed = summary.get("per_seed") or [summary]
    races = [s.get("race") or {} for s in per_seed]
    if not all("worst_correct" in r for r in races):
        return None
    return {"glances": races[0]["glances"], "steps": races[0]["steps"],
            "correct": np.array([r["worst_correct"] for r in races], bool)}


def _scores(summaries: dict[str, dict], exp: str, scores: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    found = summaries[exp].get("scores")
    if found is None or f"{scores}_scores" not in found:
        raise UserError(f"claims: results/attack/{exp}/scores.npz has no '{scores}_scores'; "
                        f"re-run `dvc repro attack@{exp}`")
    return found["ids"], found[f"{scores}_scores"], found["labels"]


def _clean_test(summaries: dict[str, dict], exp: str) -> tuple[list[str], np.ndarray]:
    found = summaries[exp].get("clean_test")
    if found is None:
        raise UserError(f"claims: results/attack/{exp} has no clean_test.npz (clean outcomes on the whole test "
                        f"split); re-run `dvc repro attack@{exp}`")
    return found["ids"], found["correct"]


def _outcomes(summaries: dict[str, dict], exp: str, column: str) -> tuple[list[str], np.ndarray]:
    per_sample = summaries[exp].get("per_sample")
    if per_sample is None or column not in per_sample["columns"]:
        raise UserError(f"claims: results/attack/{exp}/per_sample.csv has no column '{column}'; "
                        f"re-run `dvc repro attack@{exp}`")
    return per_sample["ids"], per_sample["columns"][column] != 0


def run_comparison(summaries: dict[str, dict], spec: dict) -> dict:
    """The statistics of one :func:`comparison`, :func:`gap_comparison`, :func:`auroc_comparison`
    or :func:`ratio_comparison` on the experiments' shared samples."""
    if spec.get("statistic") == "auroc":
        found = summaries[spec["a"]].get("detector_scores")
        missing = [c for c in spec["conditions"] if found is None or f"{c}:score" not in found]
        if missing:
            raise UserError(f"claims: results/detect/{spec['a']}/per_sample.npz lacks {', '.join(missing)}; "
                            f"re-run `dvc repro detect@{spec['a']}`")
        conditions = [(found[f"{c}:fooled"], found[f"{c}:score"]) for c in spec["conditions"]]
        return {**spec, **compare_auroc(found["clean_correct"], found["clean_score"], conditions,
                                         spec["threshold"]).as_dict()}
    if spec.get("statistic") in ("race", "race_models"):  # one model unrolled twice, or two models
        names = [spec["a"], spec["b"] or spec["a"]]
        races = [_race_outcomes(summaries[name]) for name in names]
        for name, race in zip(names, races):
            if race is None:
                raise UserError(f"claims: results/attack/{name}/s*/summary.json has no race.worst_correct; "
                                f"re-run `dvc repro attack@{name}`")
        if races[0]["steps"] != races[1]["steps"] or races[0]["correct"].shape[-1] != races[1]["correct"].shape[-1]:
            raise UserError(f"claims: {names[0]} and {names[1]} ran different races (attack.race_steps, race_samples)")
        j = races[0]["steps"].index(spec["steps"])
        hi, lo = (race["glances"].index(g) for race, g in zip(races, spec["glances"]))
        return {**spec, **compare(races[0]["correct"][:, hi, j], races[1]["correct"][:, lo, j]).as_dict()}
    if spec.get("statistic") == "ratio":
        found = {e: summaries[spec[e]].get("scores") for e in ("a", "b")}
        for e, data in found.items():
            if data is None or spec["own"] not in data or spec["other"] not in data:
                raise UserError(f"claims: results/attack/{spec[e]}/scores.npz lacks {spec['own']}/{spec['other']}; "
                                f"re-run `dvc repro attack@{spec[e]}`")
        if found["a"]["ids"] != found["b"]["ids"]:
            raise UserError(f"claims: {spec['a']} and {spec['b']} were attacked on different samples")
        a, b = found["a"], found["b"]
        return {**spec, **compare_ratio(a[spec["own"]], a[spec["other"]], b[spec["own"]], b[spec["other"]]).as_dict()}
    if spec.get("statistic") == "gap":
        (ids_a, a, labels), (ids_b, b, labels_b) = (_scores(summaries, spec[e], spec["scores"]) for e in ("a", "b"))
        if ids_a != ids_b or not np.array_equal(labels, labels_b):
            raise UserError(f"claims: {spec['a']} and {spec['b']} were attacked on different videos; a paired test "
                            "needs the same attack.n_samples and attack.seed for both")
        return {**spec, **compare_gap(a, b, labels, spec["threshold"]).as_dict()}
    if spec.get("statistic") == "clean_test":
        (ids_a, a), (ids_b, b) = (_clean_test(summaries, spec[e]) for e in ("a", "b"))
        if ids_a != ids_b:
            raise UserError(f"claims: {spec['a']} and {spec['b']} have different test splits; a paired test needs "
                            "the same prepared dataset for both")
        return {**spec, **compare(a, b, spec["threshold"]).as_dict()}
    ids_a, a = _outcomes(summaries, spec["a"], spec["column_a"])
    ids_b, b = _outcomes(summaries, spec["b"], spec["column_b"])
    if ids_a != ids_b:
        raise UserError(f"claims: {spec['a']} and {spec['b']} were attacked on different samples; a paired test "
                        "needs the same attack.n_samples and attack.seed for both")
    return {**spec, **compare(a, b, spec["threshold"]).as_dict()}


def _flat(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.").items()}
    return {prefix[:-1]: value}


def _shown(value) -> str:
    return "-" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def differences(summaries: dict[str, dict], a: str, b: str) -> list[str] | None:
    """``["<key>: <a's> vs <b's>", ...]``: every training setting in which experiment ``a``'s runs
    differ from ``b``'s (their summaries' ``trained_as``, the checkpoints' own record; ``-`` where one
    has no such key), or None when a summary lacks the record. A fair comparison differs only in
    what its claim is about; the report lists the rest beside the claim."""
    found = [summaries[e].get("trained_as") for e in (a, b)]
    if any(f is None for f in found):
        return None
    flat_a, flat_b = (_flat(f) for f in found)
    keys = sorted(set(flat_a) | set(flat_b))
    return [f"{k}: {_shown(flat_a.get(k))} vs {_shown(flat_b.get(k))}" for k in keys if flat_a.get(k) != flat_b.get(k)]


def with_differences(summaries: dict[str, dict], test: dict) -> dict:
    """``test`` with ``differs`` (:func:`differences`) when it compares two experiments."""
    if test.get("b") is None or test["a"] == test["b"]:
        return test
    found = differences(summaries, test["a"], test["b"])
    return test if found is None else {**test, "differs": found}


def run_paper_tests(summaries: dict[str, dict], claims: list[dict]) -> list[dict]:
    """``claims`` of one paper with their paired tests run and Holm-corrected together: each gets
    ``verdict`` (holds | contradicted | inconclusive), ``p_holm``, ``tests`` (the comparisons'
    effect, 95% interval, p, n) and ``direction`` (the point estimates' side, as before any test).
    A claim without a paired test (``comparisons`` absent) is ``inconclusive``."""
    from attnrobust.metrics.paired import Comparison

    def testable(claim: dict) -> bool:  # per-sample outcomes of every experiment it compares (the pipeline has them)
        specs = claim.get("comparisons", [])
        def has(spec: dict, exp: str | None) -> bool:
            if spec.get("statistic") in ("race", "race_models"):
                return exp is None or _race_outcomes(summaries[exp]) is not None
            key = {"gap": "scores", "ratio": "scores", "auroc": "detector_scores"}.get(spec.get("statistic"),
                                                                                    "per_sample")
            return exp is None or summaries[exp].get(key) is not None
        return bool(specs) and all(has(s, e) for s in specs for e in (s["a"], s["b"]))

    tested = [[with_differences(summaries, run_comparison(summaries, spec)) for spec in c["comparisons"]]
              if testable(c) else [] for c in claims]
    ran = [i for i, t in enumerate(tested) if t]
    found = verdicts([[Comparison(t["effect"], (t["ci_low"], t["ci_high"]), t["p"], t["n"], t["threshold"])
                       for t in tested[i]] for i in ran], require=[claims[i].get("require", "all") for i in ran]) \
        if ran else []
    out = []
    for i, claim in enumerate(claims):
        base = {k: v for k, v in claim.items() if k not in ("comparisons", "holds", "require")}
        if i in ran:
            verdict, p_holm = found[ran.index(i)]
            base.pop("untested", None)  # why it would be untested: it is not
            out.append({**base, "direction": bool(claim["holds"]), "verdict": verdict,
                        "p_holm": float(f"{p_holm:.3g}"), "tests": tested[i]})
        else:
            out.append({**base, "direction": bool(claim["holds"]), "verdict": "inconclusive", "p_holm": None,
                        "tests": [], "untested": claim.get("untested", "no per-sample outcomes of its experiments")})
    return out
