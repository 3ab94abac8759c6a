"""Plan the figures that the inputs allow, draw them, and write ``report.md`` next to them.

The output folder is replaced as a whole (:func:`attnrobust.io.replace_dir`), so a figure of an
experiment that was removed from params.yaml does not linger, and a failed run leaves the
previous report in place.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from attnrobust.io import replace_dir
from attnrobust.report import figures
from attnrobust.report import markdown as md
from attnrobust.report.inputs import Curve, ReportInputs
from attnrobust.runtime import progress

# plot table -> (x kind, panel title); which tables a dataset's curve figure shows, in this order
ACCURACY_PANELS = [("robustness_vs_eps", "eps", "PGD, threat model A (perturb anywhere)"),
                   ("robustness_vs_eps_fg_only", "eps", "PGD, threat model B (foreground only)"),
                   ("robustness_vs_steps", "steps", "PGD steps at attack.eps")]
GAP_PANELS = [("gap_vs_eps", "eps", "PGD vs. eps"), ("gap_vs_steps", "steps", "PGD steps at attack.eps")]
PANEL_WORDS = {"robustness_vs_eps": "vs. eps, threat model A", "robustness_vs_eps_fg_only": "vs. eps, threat model B",
               "robustness_vs_steps": "vs. PGD steps", "gap_vs_eps": "vs. eps", "gap_vs_steps": "vs. PGD steps"}
POSITIONS = {1: [""], 2: ["left: ", "right: "], 3: ["left: ", "middle: ", "right: "]}


@dataclass(frozen=True)
class Planned:
    """One figure: its file under ``figures/``, the section it belongs to, title, caption and how to draw it."""

    file: str
    section: str
    title: str
    caption: str
    draw: Callable[[], object]


def _headline_eps(inp: ReportInputs) -> float | None:
    eps = {s.get("eps") for s in inp.summaries.values()} | {r.get("eps") for r in (inp.robustness or {}).values()}
    eps.discard(None)
    return float(eps.pop()) if len(eps) == 1 else None


def _columns(curve: Curve, names: list[str]) -> list[str]:
    return [n for n in names if n in curve.series]


def plan_curves(inp: ReportInputs, colours: dict) -> list[Planned]:
    """One figure per dataset: accuracy (or GAP) vs. eps under each threat model, and vs. PGD steps."""
    out = []
    by_dataset: dict[str, list[str]] = {}
    for name in inp.experiments():
        by_dataset.setdefault(inp.run.dataset_of(name), []).append(name)
    eps = _headline_eps(inp)
    for dataset, names in by_dataset.items():
        for panels_spec, y_label in ((ACCURACY_PANELS, "accuracy"), (GAP_PANELS, "GAP@20")):
            video = panels_spec is GAP_PANELS
            chosen = [(table, kind, title) for table, kind, title in panels_spec
                      if table in inp.curves and _columns(inp.curves[table], names)]
            if not chosen:
                continue
            panels = [(title, kind, inp.curves[table]) for table, kind, title in chosen]
            where = POSITIONS.get(len(chosen), [""] * len(chosen))
            shown = "; ".join(f"{pos}{y_label} {PANEL_WORDS[table]}" for pos, (table, _, _) in zip(where, chosen))
            out.append(Planned(
                f"figures/curves_{dataset}.png", "curves", f"{dataset}",
                f"{shown}. Higher is more robust; "
                f"{'GAP bottoms out at an uninformed ranking, not 0' if video else 'every curve must reach 0 at 255'}.",
                lambda p=panels, n=names, y=y_label, v=video: figures.curves_figure(
                    p, n, colours, y_label=y, headline_eps=eps,
                    eps_label="eps (YouTube-8M quantisation levels)" if v else "eps (8-bit levels)")))
    return out


def plan_race(inp: ReportInputs) -> list[Planned]:
    rows = inp.race or []
    out = []
    for model in sorted({r["experiment"] for r in rows if r["glances"] > 0}):
        dataset = inp.run.dataset_of(model)
        baselines = [e for e in inp.experiments() if inp.run.dataset_of(e) == dataset and
                     any(r["experiment"] == e and r["glances"] == 0 for r in rows)]
        trained = inp.summaries.get(model, {}).get("race", {}).get("trained_glances")
        out.append(Planned(
            f"figures/race_{model}.png", "race", model,
            f"rows: {model} unrolled for each number of glances (trained: {trained}), then {len(baselines)} "
            "baseline(s) without glances; columns: attack steps; the claim needs accuracy to rise down the glance "
            "rows in the right-hand (worst-case) panel.",
            lambda m=model, b=baselines, t=trained: figures.race_figure(rows, m, b, t)))
    return out


def _variation_sentence(summary: dict) -> str:
    """The race's measure of how much the maps depend on the input, per glance, as one sentence."""
    att = summary.get("race", {}).get("attention")
    if not att:
        return ""
    per_glance = lambda key: ", ".join(f"{v:.3f}" for v in att[key])  # noqa: E731
    return (f" Over the race's {summary['race']['n']} samples (seed mean), per glance: total-variation distance "
            f"between the maps of two images {per_glance('tv_between_images')} (0: one map for every image, "
            f"1: disjoint maps); between an image's map and its attacked version's {per_glance('tv_clean_vs_adv')}; "
            f"largest weight of a map {per_glance('peak_mass')} (1: one cell).")


def plan_attention(inp: ReportInputs) -> list[Planned]:
    out = []
    for exp, att in inp.attention.items():
        out.append(Planned(
            f"figures/glances_{exp}.png", "attention", f"{exp}, per glance",
            f"each glance's map (mean over heads) on {min(4, len(att['label']))} clean inputs (left) and their "
            f"random-targeted PGD-{int(att['steps'])} versions (right); the same bright cells in every row mean a "
            f"fixed place, not the object.{_variation_sentence(inp.summaries.get(exp, {}))}",
            lambda a=att: figures.glances_figure(a)))
    for exp, ex in inp.examples.items():
        if "attention_clean" not in ex:
            continue
        out.append(Planned(
            f"figures/attention_{exp}.png", "attention", exp,
            "the model's attention map over the clean, PGD and targeted-PGD input; a map that moves under attack "
            "means the attack pulled the attention away.",
            lambda e=ex: figures.example_attention_figure(e)))
    return out


def _gallery_caption(ex: dict) -> str:
    k = min(4, len(ex["label"]))
    fooled = int((ex["pred_adv"][:k] != ex["label"][:k]).sum())
    hit = int((ex["pred_targeted"][:k] == ex["target"][:k]).sum())
    return f"PGD leaves {k - fooled} of {k} shown samples correct; targeted PGD reaches its target on {hit} of {k}."


def plan_gallery(inp: ReportInputs) -> list[Planned]:
    return [Planned(f"figures/gallery_{exp}.png", "gallery", exp, _gallery_caption(ex),
                    lambda e=ex: figures.gallery_figure(e)) for exp, ex in inp.examples.items()]


def plan_detectors(inp: ReportInputs) -> list[Planned]:
    """One ROC figure per detector (curves are named ``<detector>/<condition>``)."""
    by_detector: dict[str, dict] = {}
    for name, points in (inp.roc or {}).items():
        detector, _, condition = name.rpartition("/")
        by_detector.setdefault(detector or "detector", {})[condition] = points
    return [Planned(f"figures/roc_{detector}.png", "detectors", detector,
                    "left: attacks on the classifier (adaptive: on classifier and detector together); right: quality "
                    "corruptions. The further a curve bends to the top left of the dashed diagonal (guessing), the "
                    "better; AUC in the legend; the dotted line marks 5% false positives.",
                    lambda c=curves: figures.roc_figure(c)) for detector, curves in by_detector.items()]


def plan_video(inp: ReportInputs, colours: dict) -> list[Planned]:
    rows = {n: r for n, r in (inp.robustness or {}).items() if "clean_gap" in r}
    if not rows:
        return []
    order = [n for n in inp.experiments() if n in rows]
    return [Planned("figures/gap_video.png", "video", "GAP@20, clean vs. adversarial",
                    "per video model, GAP@20 on clean features, under FGSM, under PGD and in the per-sample worst "
                    "case at attack.eps; the drop from the first bar to the last is what the attack costs.",
                    lambda: figures.gap_bars_figure({n: rows[n] for n in order}, colours))]


SECTIONS = [  # figure section -> (heading, how to read its figures, what to say when the inputs give none)
    ("curves", "Robustness curves",
     "Accuracy (GAP@20 for video) under PGD as the budget grows, under threat model A (the attacker may perturb "
     "every pixel; a mask model then wipes the background part) and B (only the annotated foreground), and as the "
     "number of PGD steps grows at attack.eps (dotted line). Eps is in levels on a doubling axis; 255 is the whole "
     "input box, where any input is reachable. A curve that rises with eps or steps points at gradient masking.",
     "no plot table in `metrics/plots/` (run `dvc repro metrics`)"),
    ("race", "S3TA computational race",
     "Accuracy on the true label under random-targeted PGD at attack.eps. Left: the white-box attack on the "
     "model unrolled for that many glances. Right: per sample, the worse of that and the examples made against the "
     "model as trained; the honest figure when extra glances only hide the gradient.",
     "`metrics/plots/race.csv` has no model with glances (no S3TA experiment)"),
    ("attention", "Attention maps",
     "Maps are in [0, 1] (brighter = more weight), overlaid on the input. For a mask model the map is its input "
     "mask, which the attacker may not change. Red titles marked ✗ are wrong predictions.",
     "no `attention.npz`, and no `examples.npz` of a model with attention maps"),
    ("gallery", "Adversarial examples",
     "Seeded test samples and the suite's own attacks at attack.eps: clean input, untargeted PGD and its "
     "perturbation, random-targeted PGD and its perturbation (perturbations scaled so -eps is black, +eps white), "
     "and a clean input of the target class. A targeted perturbation that draws the target's shape or colours "
     "paints the class (Zoran et al. report this for S3TA); noise does not. Where the model ignores pixels (a mask "
     "model's background) the perturbation stays at PGD's random start, and the suite's PGD stops a sample as soon as "
     "it is fooled, so an easily fooled sample keeps little more than its random start. Red titles marked ✗: "
     "wrong prediction (\"hit\": it is the attack's target).",
     "no `results/attack/<exp>/examples.npz` (image experiments write one; re-run `dvc repro attack`)"),
    ("detectors", "Detector ROC curves",
     "True positive rate (attacked or corrupted inputs flagged) against false positive rate (clean inputs flagged).",
     "`metrics/plots/roc.csv` not found (no detector experiment in this run)"),
    ("video", "Video: GAP under attack", "",
     "no video experiment in `metrics/robustness.json`"),
]


def plan_figures(inp: ReportInputs) -> list[Planned]:
    colours = figures.palette(inp.experiments())
    return [*plan_curves(inp, colours), *plan_race(inp), *plan_attention(inp), *plan_gallery(inp),
            *plan_detectors(inp), *plan_video(inp, colours)]


def render_markdown(inp: ReportInputs, planned: list[Planned]) -> str:
    parts = ["# attnrobust report", "",
             "Generated by `dvc repro report` from `metrics/` and `results/`; every number below is read from those "
             "files. Budgets are in 8-bit levels (eps 8 = 8/255).", "",
             md.run_section(inp), md.claims_section(inp), md.differs_section(inp), md.headline_section(inp),
             md.beside_section(inp),
             "## Figures", ""]
    for key, heading, intro, none in SECTIONS:
        parts += [f"### {heading}", ""]
        found = [p for p in planned if p.section == key]
        if found and intro:
            parts += [intro, ""]
        parts += [md.figure_block(p.file, p.title, p.caption) for p in found] or [f"_Not available: {none}._", ""]
    parts += [md.detect_section(inp), md.sanity_section(inp), md.produced_by_section(inp), md.missing_section(inp.missing)]
    return "\n".join(parts).rstrip() + "\n"


def build_report(inp: ReportInputs, out_dir: Path) -> dict:
    """Write ``out_dir/report.md`` and ``out_dir/figures/*.png``, replacing ``out_dir``. Returns a summary."""
    t0 = time.perf_counter()
    planned = plan_figures(inp)
    with replace_dir(Path(out_dir)) as staging:
        (staging / "figures").mkdir()
        for item in progress(planned, desc="report figures", unit="figure"):
            figures.save(item.draw(), staging / item.file)
        (staging / "report.md").write_text(render_markdown(inp, planned))
    return {"figures": len(planned), "claims": len(inp.claims or {}), "missing": len(inp.missing),
            "seconds": round(time.perf_counter() - t0, 1)}
