"""Print the README's results sections from the committed metrics, so no number is copied by hand.

    python bench/readme_results.py > /tmp/results.md                       # the default run
    python bench/readme_results.py --run runs/real-cpu > /tmp/real.md       # a kept run of another profile

then paste each between its markers in the README. Reads metrics/robustness.json,
metrics/detection.json, metrics/claims.json and metrics/env.json (for a kept run, those under
runs/<name>/ and its run.json). tests/test_readme.py checks that the README holds exactly what
this prints.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from attnrobust.provenance import describe  # noqa: E402

BEGIN, END = "<!-- results: begin (bench/readme_results.py) -->", "<!-- results: end -->"


def markers(run: str | None) -> tuple[str, str]:
    """The README's markers around the block for the default run (None) or for ``runs/<name>``."""
    if run is None:
        return BEGIN, END
    return f"<!-- results of {run}: begin (bench/readme_results.py --run {run}) -->", f"<!-- results of {run}: end -->"


def _read(name: str, root: Path = ROOT) -> dict:
    return json.loads((root / "metrics" / name).read_text())


def _row(cells) -> str:
    return "| " + " | ".join(f"{c:.3f}" if isinstance(c, float) else str(c) for c in cells) + " |"


def results_section(run: str | None = None) -> str:
    """The default run's block, or with ``run`` (``runs/<name>``, from bench/save_run.py) that run's:
    its data and command first, then the same tables (its video, if synthetic, left to its report)."""
    root = ROOT / run if run else ROOT
    robustness, detection, claims, env = (_read(n, root) for n in ("robustness.json", "detection.json", "claims.json",
                                                                      "env.json"))
    kept = json.loads((root / "run.json").read_text()) if run else None
    images = {k: v for k, v in robustness.items() if "clean_acc" in v}
    videos = {k: v for k, v in robustness.items() if "clean_gap" in v}
    n_images, n_videos = ({v["n"] for v in group.values()} for group in (images, videos))
    seeds = sorted({v.get("seeds", 1) for v in robustness.values()})
    seeds_text = "one training seed" if seeds == [1] else f"{'/'.join(map(str, seeds))} training seeds per experiment"
    begin, end = markers(run)
    data_text = (f"{kept['about']} Profile `{kept['profile']}`, `{kept['command']}`: {kept['stages']} stages in "
                 f"{kept['wall_min']} min here; the run's own report is `{run}/reports/report.md`. "
                 if kept else "Synthetic data, ")
    out = [begin, "",
           f"{data_text}`attack.eps: {next(iter(robustness.values()))['eps']}`, {seeds_text}, "
           f"{'/'.join(map(str, sorted(n_images)))} attacked test images per seed "
           f"({'/'.join(map(str, sorted(n_videos)))} videos), the same for every seed and experiment; every number "
           "is the mean over the seeds, and ± is the seed-to-seed standard deviation. Produced by "
           "(`metrics/env.json`): training "
           f"{describe(env['training'])}; evaluation {describe(env['evaluation'])}; commit "
           f"{env['evaluation'].get('git_commit')}. \"robust\" is the per-sample worst case over every attack "
           "within the budget, AutoAttack's APGD-CE and APGD-T included; \"ours only\" is the same worst case "
           "without them (what a PGD-only evaluation would report).", "",
           "| experiment | clean | FGSM | PGD | random-targeted PGD (true label) | ours only | robust (worst case) "
           "| flag |",
           "|---|---|---|---|---|---|---|---|"]
    sd = lambda v, k: f"{v[k]:.3f} ± {v[k + '_seed_sd']:.3f}" if f"{k}_seed_sd" in v else v[k]  # noqa: E731
    out += [_row([k, sd(v, "clean_acc"), v["fgsm_acc"], v["pgd_acc"], v["pgd_targeted_acc"],
                  v.get("pgd_suite_acc", "n/a"), sd(v, "robust_acc"),
                  "unreliable: " + v["failed_checks"] if v["unreliable"] else ""]) for k, v in sorted(images.items())]
    if not kept:
        out += ["", "| video experiment (GAP@20) | clean | FGSM | PGD (BCE) | PGD (margin) | robust |",
                "|---|---|---|---|---|---|"]
        out += [_row([k, sd(v, "clean_gap"), v["fgsm_gap"], v["pgd_gap"], v.get("pgd_margin_gap", "n/a"),
                      sd(v, "robust_gap")])
                for k, v in sorted(videos.items())]
    out += ["", "| detector | clean acc (accepted) | AUROC PGD / adaptive | attack success PGD / adaptive | "
                "corruptions mean AUROC |", "|---|---|---|---|---|"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    out += [_row([k, f"{fmt(v.get('clean_acc'))} ({fmt(v.get('clean_accepted_acc'))})",
                  f"{fmt(v.get('pgd_auroc'))} / {fmt(v.get('adaptive_auroc'))}",
                  f"{fmt(v.get('pgd_success'))} / {fmt(v.get('adaptive_success'))}",
                  fmt(v.get("corruption_mean_auroc"))]) for k, v in sorted(detection.items())]
    counts = {w: sum(c["verdict"] == w for c in claims.values()) for w in ("holds", "contradicted", "inconclusive")}
    out += ["", f"Claims ({len(claims)}; `metrics/claims.json`, the report's table): {counts['holds']} hold, "
                f"{counts['contradicted']} are contradicted, {counts['inconclusive']} are inconclusive.", "",
            "| claim | effect [95% CI], n x seeds (per-seed effects) | Holm p | verdict |", "|---|---|---|---|"]
    pretty = lambda p: "< 1e-6" if p < 1e-6 else f"{p:.3g}"  # noqa: E731
    for key, c in claims.items():
        if c["tests"]:
            t = c["tests"][0]
            more = f" (+{len(c['tests']) - 1} more)" if len(c["tests"]) > 1 else ""
            per_seed = t.get("seed_effects") or []
            spread = f" x {len(per_seed)} ({', '.join(f'{e:+.2f}' for e in per_seed)})" if len(per_seed) > 1 else ""
            effect = (f"{t['label']}: {t['effect']:+.3f} [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}], "
                      f"{t['n']}{spread}{more}")
            p = pretty(c["p_holm"])
        else:
            effect, p = "untested: " + c["untested"], "-"
        flag = " (unreliable evaluation)" if c["unreliable"] else ""
        out.append(_row([f"`{key}` {c['claim']}", effect, p, f"**{c['verdict']}**{flag}"]))
    return "\n".join(out + ["", end])


if __name__ == "__main__":
    print(results_section(sys.argv[2] if sys.argv[1:2] == ["--run"] else None))
