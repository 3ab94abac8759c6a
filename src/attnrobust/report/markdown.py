"""The report's text: tables and sections as markdown strings, from loaded inputs.

Every section either shows its data or says in one line which input was absent and what would
produce it; it never invents a number. Numbers are printed to 3 decimals, as measured.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from attnrobust.metrics.claims import UNRELIABLE_TEXT
from attnrobust.report.inputs import ReportInputs

PAPERS = {  # claim family -> the paper it checks
    "s3ta": "Zoran et al. 2019 (S3TA)",
    "fgmask": "Vaishnavi et al. 2019 (attention masks)",
    "protoattn": "Nakka & Salzmann 2020 (prototype attention)",
    "a_art": "Choudhary et al. 2021 (A-ART)",
    "iqa_kd": "Feng & Cai 2020 (IQA + distillation)",
}
# headline columns: (robustness.json key, header); a table shows the columns some row has
IMAGE_COLUMNS = [("clean_acc", "clean"), ("fgsm_acc", "FGSM"), ("pgd_acc", "PGD"),
                 ("pgd_targeted_acc", "targeted PGD (true label)"), ("targeted_success", "target hit"),
                 ("autoattack_acc", "AutoAttack"), ("robust_acc", "robust (worst case)"),
                 ("robust_acc_seed_sd", "robust, seed sd"), ("pgd_acc_fg_only", "PGD, B"),
                 ("robust_acc_fg_only", "robust, B"), ("seeds", "seeds")]
DETECT_COLUMNS = ["clean_acc", "clean_accepted_acc", "fgsm_auroc", "pgd_auroc", "pgd_tpr_at_5fpr", "pgd_success",
                  "pgd_targeted_auroc", "adaptive_auroc", "adaptive_tpr_at_5fpr", "adaptive_success",
                  "corruption_mean_auroc"]
VIDEO_COLUMNS = [("clean_gap", "clean GAP"), ("fgsm_gap", "FGSM GAP"), ("pgd_gap", "PGD GAP"),
                 ("robust_gap", "robust GAP"), ("robust_gap_seed_sd", "robust GAP, seed sd"),
                 ("clean_hit1", "clean Hit@1"), ("pgd_hit1", "PGD Hit@1"), ("clean_map", "clean mAP"),
                 ("pgd_map", "PGD mAP"), ("seeds", "seeds")]


def cell(value: Any) -> str:
    """A table cell: numbers to 3 decimals, booleans as yes/no, pipes and newlines escaped."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def absent(what: str, path: str, fix: str) -> str:
    return f"_Not available: {what} (`{path}` not found; {fix})._"


def _settings(spec: dict[str, Any]) -> str:
    shown = {k: v for k, v in spec.items() if k not in ("dataset", "method", "model", "train")}
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or "-"


def run_section(inp: ReportInputs) -> str:
    """Data source, the experiments with their method and settings, and the attack settings."""
    out = ["## What was run", "", f"Data: `data.source: {inp.run.data_source}`. "
           f"Shared training: {_settings(inp.run.train) if inp.run.train else 'not given'}.", ""]
    names = inp.experiments()
    if not names:
        return "\n".join(out + ["_No experiment has results._", ""])
    rows = []
    for name in names:
        spec = inp.run.experiments.get(name, {})
        epochs = spec.get("train", {}).get("epochs", inp.run.train.get("epochs", "?"))
        rows.append([name, spec.get("dataset", inp.run.dataset_of(name)), spec.get("method", "?"),
                     spec.get("model", "?"), epochs, _settings(spec)])
    out += [table(["experiment", "dataset", "method", "model", "epochs", "settings"], rows), ""]
    settings = {}
    for s in inp.summaries.values():
        video = "clean_gap" in s
        unit = "YouTube-8M quantisation levels of the feature range" if video else "8-bit levels of the pixel range"
        suite = f", suite `{s['suite']}`" if "suite" in s else ""
        text = (f"eps {s.get('eps')} ({unit}), PGD-{s.get('steps')} with {s.get('restarts')} restart(s), "
                f"{s.get('n')} test samples{suite}")
        settings.setdefault("video" if video else "images", set()).add(text)
    for domain, texts in settings.items():
        out.append(f"Attack on {domain}: {'; '.join(sorted(texts))}.  ")
    return "\n".join(out + [""])


def claims_section(inp: ReportInputs) -> str:
    out = ["## Claims", ""]
    if inp.claims is None:
        return "\n".join(out + [absent("the claims table", "metrics/claims.json", "run `dvc repro metrics`"), ""])
    if not inp.claims:
        return "\n".join(out + ["_No configured claim has all its experiments in this run (params.yaml `claims:`)._",
                                ""])
    rows = []
    for key, c in inp.claims.items():
        family = key.split("/")[0]
        unreliable = c.get("unreliable", UNRELIABLE_TEXT in c.get("ours", ""))
        rows.append([PAPERS.get(family, family), c.get("claim", ""), c.get("paper", ""),
                     c.get("ours", "").replace(UNRELIABLE_TEXT, ""),
                     "as claimed" if c.get("direction") else "not as claimed", test_cell(c),
                     f"**{c.get('verdict', '?')}**", "UNRELIABLE" if unreliable else "no"])
    counts = {v: sum(c.get("verdict") == v for c in inp.claims.values()) for v in ("holds", "contradicted", "inconclusive")}
    shaky = sum(r[-1] == "UNRELIABLE" for r in rows)
    out += [f"Of {len(rows)} claims, {counts['holds']} hold, {counts['contradicted']} are contradicted and "
            f"{counts['inconclusive']} are inconclusive; {shaky} rest on an evaluation that failed a sanity check "
            "(column *unreliable*; see [Sanity-check failures](#sanity-check-failures)).", "",
            "How to read it: *direction* is where the point estimates fall (a difference within max(1 pp, 2 "
            "samples) counts as a tie). *test* is the paired comparison behind the verdict: the effect (difference "
            "of per-sample robust accuracy on the same attacked samples, averaged over the training seeds, seed s "
            "of one experiment paired with seed s of the other), its 95% paired bootstrap interval (resampling the "
            "seed pairs and the samples, each sample with all its seeds, so that it covers the training noise as "
            "well as the sampling of test images), n samples x k seeds, the per-seed effects (the seed-to-seed "
            "spread) and the p-value (for the sign of an accuracy difference the larger of the exact McNemar test "
            "stratified by seed and that bootstrap's; the bootstrap's for a threshold such as \"> 20 points\"), "
            "Holm-corrected within each paper. *verdict*: **holds** or **contradicted** at alpha = 0.05, else "
            "**inconclusive** (also every claim whose statistic has no per-sample test yet).", "",
            table(["paper", "claim", "paper's number", "ours", "direction", "test", "verdict", "unreliable"], rows), ""]
    return "\n".join(out)


def differs_section(inp: ReportInputs) -> str:
    """Per paired comparison of two experiments, every training setting their runs differ in
    (the checkpoints' own record, ``tests[].differs`` of metrics/claims.json)."""
    out = ["## What each comparison's two runs differ in", ""]
    rows = [[key, t.get("label", ""), f"{t['a']} vs {t['b']}",
             "; ".join(t["differs"]) if t["differs"] else "nothing: the same settings"]
            for key, c in (inp.claims or {}).items() for t in c.get("tests", []) if "differs" in t]
    if not rows:
        return "\n".join(out + ["_No claim's test has the runs' training records (`trained_as` in the attack "
                                "summaries); re-run `dvc repro attack`._", ""])
    out += ["Compare like with like: two runs in a claim should differ only in what the claim is about. Every "
            "training setting in which they do differ (dataset, method, model and its arguments, every method key "
            "with its defaults, and the effective epochs, batch size, learning rate, weight decay and precision; "
            "`-` where one of them has no such key), read from the checkpoints themselves. A difference that is "
            "not the claim's subject is a confound the verdict carries.", "",
            table(["claim", "comparison", "a vs b", "differs in (a vs b)"], rows), ""]
    return "\n".join(out)


def test_cell(claim: dict) -> str:
    """``+0.105 [+0.040, +0.170], n 100 x 3 seeds (+0.09, +0.12, +0.10), p 0.003`` per comparison,
    or why there is no test."""
    if not claim.get("tests"):
        return f"untested: {claim.get('untested', 'no paired test')}"

    def seeds(t: dict) -> str:
        effects = t.get("seed_effects") or []
        if len(effects) < 2:
            return ", 1 seed"
        return f" x {len(effects)} seeds (" + ", ".join(f"{e:+.2f}" for e in effects) + ")"

    parts = [f"{t['label']}: {t['effect']:+.3f} [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}]"
             + (f" vs threshold {t['threshold']:+.2f}" if t["threshold"] else "") + f", n {t['n']}{seeds(t)}, "
             f"p {t['p']:.3g}" for t in claim["tests"]]
    return "; ".join(parts) + f"; Holm p {claim['p_holm']:.3g}"


def headline_section(inp: ReportInputs) -> str:
    out = ["## Headline results", ""]
    if inp.robustness is None:
        return "\n".join(out + [absent("headline metrics", "metrics/robustness.json", "run `dvc repro metrics`"), ""])
    by_dataset: dict[str, list[str]] = {}
    for name in inp.experiments():
        if name in inp.robustness:
            by_dataset.setdefault(inp.run.dataset_of(name), []).append(name)
    out.append("Accuracy (images) or GAP@20 (video) at `attack.eps`, the mean over the training seeds; *robust* is "
               "the per-sample worst case over every attack within the budget, *seed sd* its standard deviation "
               "across seeds; *B* is threat model B (perturbation restricted to the annotated foreground). A flagged "
               "row failed a sanity check in some seed. A `mask: only` experiment (`*_maskonly`) is the mask-only floor: "
               "its model sees the binary mask and no pixels, so no attack of threat model A moves it and its accuracy "
               "is what the mask's outline alone gives away; a mask model is worth what it adds over it.")
    for dataset, names in by_dataset.items():
        rows_in = [inp.robustness[n] for n in names]
        video = any("clean_gap" in r for r in rows_in)
        columns = [(k, h) for k, h in (VIDEO_COLUMNS if video else IMAGE_COLUMNS) if any(k in r for r in rows_in)]
        rows = [[n, *((r[k] if k == "seeds" else float(r[k])) if k in r else "-" for k, _ in columns),
                 f"UNRELIABLE: {r.get('failed_checks', '?')}" if r.get("unreliable") else ""]
                for n, r in zip(names, rows_in)]
        out += ["", f"### {dataset}", "", table(["experiment", *(h for _, h in columns), "flag"], rows)]
    return "\n".join(out + [""])


def _short(value: Any) -> str:
    """A check's value, compact: floats to 3 decimals, long lists cut."""
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        items = [_short(v) for v in value[:8]]
        return "[" + ", ".join(items) + (", ..." if len(value) > 8 else "") + "]"
    return str(value)


def sanity_section(inp: ReportInputs) -> str:
    out = ["## Sanity-check failures", ""]
    if not inp.summaries:
        return "\n".join(out + [absent("per-experiment summaries", "results/attack/<exp>/summary.json",
                                       "run `dvc repro attack`"), ""])
    evaluated = {**inp.summaries, **{f"detector {k}": v for k, v in inp.detect.items()}}
    failures = [(exp, name, check) for exp, s in evaluated.items()
                for name, check in s.get("sanity", {}).items() if not check.get("passed", True)]
    if not failures:
        return "\n".join(out + [f"None: every check passed for all {len(evaluated)} evaluations.", ""])
    out.append(f"{len(failures)} failed check(s); the results they guard are marked UNRELIABLE above.")
    out.append("")
    out += [f"- **{exp}**: `{name}` failed. Rule: {check.get('rule', '?')}. Measured: `{_short(check.get('value'))}`."
            for exp, name, check in failures]
    return "\n".join(out + [""])


def detect_section(inp: ReportInputs) -> str:
    """Detectors (results/detect/<name>/summary.json) at the headline eps: one row each, the same
    numbers as ``metrics/detection.json`` (:func:`attnrobust.metrics.detection.detection_headline`)."""
    out = ["## Detectors", ""]
    if not inp.detect:
        return "\n".join(out + [absent("detector results", "results/detect/<name>/summary.json",
                                       "no detector experiment in this run"), ""])
    from attnrobust.metrics.detection import detection_headline

    rows_in = detection_headline(inp.detect)
    keys = [k for k in DETECT_COLUMNS if any(k in r for r in rows_in.values())]
    rows = [[name, *(float(r[k]) if isinstance(r.get(k), (int, float)) else "-" for k in keys),
             "UNRELIABLE" if r.get("unreliable") else ""] for name, r in rows_in.items()]
    out += ["AUROC and TPR at 5% FPR of flagging attacked inputs (only those that fool the classifier) against "
            "correctly classified clean ones, at attack.eps; *success* is the share of inputs the attack gets "
            "misclassified and accepted; *adaptive* attacks classifier and detector together.", "",
            table(["detector", *keys, "flag"], rows), ""]
    return "\n".join(out)


def produced_by_section(inp: ReportInputs) -> str:
    """What produced the results (``metrics/env.json``): versions, CPU/GPU, threads, precision,
    commit, for the evaluations and for the training of the models they evaluated."""
    out = ["## Produced by", ""]
    if not inp.env:
        return "\n".join(out + [absent("provenance", "metrics/env.json", "run `dvc repro metrics`"), ""])
    parts = {name: inp.env.get(name) or {} for name in ("training", "evaluation")}
    keys = sorted(set().union(*parts.values()))
    out += ["`mixed`: the stages did not all agree (see each `provenance.json` under `models/` and `results/`). "
            "Floats differ across CPUs of the same kind, so numbers reproduce bit for bit only where these match.",
            "", table(["", *parts], [[k, *(str(p.get(k, "-")) for p in parts.values())] for k in keys]), ""]
    return "\n".join(out)


def figure_block(file: str, title: str, caption: str) -> str:
    return f"**{title}**: {caption}\n\n![{title}]({file})\n"


def missing_section(missing: Sequence[str]) -> str:
    if not missing:
        return ""
    return "\n".join(["## Inputs not found", "", *(f"- `{m}`" for m in missing), ""])


def beside_section(inp: ReportInputs) -> str:
    """This run's image experiments and claims next to a committed run of another profile
    (``runs/<name>/``, e.g. the real-data run), side by side, with each verdict's interval."""
    other = inp.beside
    if other is None:
        return ""
    run = other["run"]
    out = [f"## Beside: profile `{run.get('profile')}` (`{other['dir']}`)", ""]
    if run.get("profile") == inp.run.profile:
        return "\n".join(out + [f"_This is a run of that profile; `{other['dir']}` holds the committed one._", ""])
    out += [f"{run.get('about', '')} Its own report: `{other['dir']}/reports/report.md`; produced by commit "
            f"{other['env'].get('evaluation', {}).get('git_commit')} with `{run.get('command')}` in "
            f"{run.get('wall_min')} min. The models and schedules differ between the two profiles, so a "
            "difference between the columns mixes the data with the training settings; within a column, the "
            "claims compare like with like.", ""]
    ours, theirs = inp.robustness or {}, other["robustness"]
    names = [n for n in inp.experiments() if "clean_acc" in ours.get(n, {}) and "clean_acc" in theirs.get(n, {})]
    rows = [[n, *(float(src[n][k]) for k in ("clean_acc", "pgd_acc", "robust_acc") for src in (ours, theirs)),
             f"{theirs[n].get('n')} x {theirs[n].get('seeds', 1)}"] for n in names]
    here, there = "this run", f"`{run.get('profile')}`"
    out += [table(["experiment", *(f"{what}, {who}" for what in ("clean", "PGD", "robust") for who in (here, there)),
                   f"n x seeds, {there}"], rows), ""]
    verdicts = other["verdicts"]
    rows = []
    for key, c in (inp.claims or {}).items():
        if key not in verdicts:
            continue
        t, v = (c.get("tests") or [None])[0], verdicts[key]
        mine = (f"{t['effect']:+.3f} [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}]" if t else "untested")
        theirs_cell = (f"{v['effect']:+.3f} [{v['ci_low']:+.3f}, {v['ci_high']:+.3f}]"
                       if v.get("effect") is not None else "untested")
        rows.append([f"`{key}` {c.get('claim', '')}", mine, f"**{c.get('verdict')}**", theirs_cell,
                     f"**{v.get('verdict')}**", "yes" if c.get("verdict") != v.get("verdict") else ""])
    out += ["Claims: the first test's effect with its 95% paired bootstrap interval, and the verdict (Holm-corrected "
            "within each paper, as in the claims table).", "",
            table(["claim", f"effect, {here}", f"verdict, {here}", f"effect, {there}", f"verdict, {there}",
                   "differs"], rows), ""]
    return "\n".join(out)
