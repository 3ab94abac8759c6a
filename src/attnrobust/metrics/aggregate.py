"""Gather every ``results/attack/<exp>/summary.json`` into the git-tracked metrics and plot tables.

``metrics/robustness.json`` is shallow, ``{exp: {metric: value}}``, so ``dvc metrics diff``
shows one line per experiment and metric. Plot tables are long CSVs (an ``experiment`` column)
that the static ``plots:`` section of dvc.yaml points at without naming any experiment.
"""
from __future__ import annotations

import csv
from pathlib import Path

from attnrobust.errors import UserError
from attnrobust.io import read_json

HEADLINE = ("clean_acc", "fgsm_acc", "pgd_acc", "pgd_targeted_acc", "targeted_success", "robust_acc",
            "clean_gap", "clean_hit1", "clean_map", "fgsm_gap", "pgd_gap", "pgd_hit1", "pgd_map", "pgd_margin_gap",
            "robust_gap",
            "pgd_acc_fg_only", "robust_acc_fg_only",  # *_fg_only: threat model B, foreground-only perturbation
            "pgd_suite_acc", "aa_extra_broken",  # attack.suite: standard: our attacks alone, AutoAttack's addition
            "autoattack_acc")  # attack.aa_from: clean only: AutoAttack alone
# plot table -> (x key, y key) in a summary's curves; a table holds the summaries that have its y key
CURVES = {"robustness_vs_eps": ("eps", "eps_acc"), "robustness_vs_steps": ("steps", "steps_acc"),
          "gap_vs_eps": ("eps", "eps_gap"), "gap_vs_steps": ("steps", "steps_gap"),
          "robustness_vs_eps_fg_only": ("eps", "eps_acc_fg_only")}


def read_summaries(results_dir: Path, names: list[str], stage: str = "attack") -> dict[str, dict]:
    """``{name: <results_dir>/<name>/summary.json}``, each written by ``<stage>@<name>``."""
    out = {}
    for name in names:
        path = Path(results_dir) / name / "summary.json"
        if not path.is_file():
            raise UserError(f"{path}: missing; run `dvc repro {stage}@{name}` first")
        out[name] = read_json(path)
    return out


def read_scores(results_dir: Path, name: str) -> dict | None:
    """``{"ids": [...], "<attack>_scores": (N, C) float, "labels": (N, C)}`` from
    ``<results_dir>/<name>/scores.npz`` (video experiments), or None when it is absent."""
    import numpy as np

    path = Path(results_dir) / name / "scores.npz"
    if not path.is_file():
        return None
    with np.load(path) as data:
        out = {k: data[k] for k in data.files}
    out["ids"] = [str(i) for i in out["ids"]]
    return out


def read_per_sample(results_dir: Path, name: str) -> dict | None:
    """``{"ids": [...], "columns": {column: int array}}`` from ``<results_dir>/<name>/per_sample.csv``
    (one row per attacked sample), or None when the file is absent (detectors have none)."""
    import numpy as np

    path = Path(results_dir) / name / "per_sample.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {"ids": [], "columns": {}}
    try:
        columns = {k: np.array([int(r[k]) for r in rows]) for k in rows[0] if k != "id"}
    except ValueError as exc:
        raise UserError(f"{path}: not a per-sample table ({exc}); re-run `dvc repro attack@{name}`") from exc
    return {"ids": [r["id"] for r in rows], "columns": columns}


def headline_metrics(summaries: dict[str, dict]) -> dict[str, dict]:
    """``{exp: {metric: value}}`` with accuracies rounded to 4 decimals and the reliability flag."""
    metrics = {}
    for exp, s in summaries.items():
        row = {k: round(float(s[k]), 4) for k in HEADLINE if k in s}
        for head, scores in s.get("heads", {}).items():  # attacks/heads.py: the paper's BIM / MIM per head
            row.update({f"{head}_{k}": round(float(v), 4) for k, v in scores.items()
                        if k.startswith(("bim_", "mim_", "worst_"))})
        if "latent" in s:  # protoattn: nearest other-class / own-class prototype distance
            row["latent_ratio"] = round(float(s["latent"]["clean"]["ratio"]), 4)
        row.update({"eps": s["eps"], "steps": s["steps"], "n": s["n"], "unreliable": bool(s["unreliable"])})
        failed = sorted(k for k, c in s["sanity"].items() if not c["passed"])
        row["failed_checks"] = ",".join(failed) if failed else "none"
        metrics[exp] = row
    return metrics


def curve_value_name(y_key: str) -> str:
    """The value column of a curve table: ``eps_acc`` -> ``acc``, ``eps_gap`` -> ``gap``."""
    return y_key.split("_", 1)[1]


def write_curve(path: Path, summaries: dict[str, dict], x_key: str, y_key: str) -> None:
    """Long CSV, ``experiment,<x_key>,<value>``: one row per experiment and measured x, so that
    dvc.yaml's plot (the ``curves`` template colours by experiment) never names an experiment.

    Only summaries whose curves have ``y_key`` get rows (video has GAP curves, images accuracy).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["experiment", x_key, curve_value_name(y_key)])
        for exp, s in summaries.items():
            if y_key in s["curves"]:
                writer.writerows([exp, x, f"{y:.4f}"] for x, y in zip(s["curves"][x_key], s["curves"][y_key]))


TRAINING_CURVES = {"training_loss": "train/loss.tsv", "training_clean_acc": "test/clean_acc.tsv"}  # dvclive files


def write_training_curves(plots_dir: Path, live_dir: Path, experiments: list[str]) -> list[Path]:
    """Long CSVs ``experiment,step,<value>`` gathered from every experiment's dvclive folder
    (``<live_dir>/<exp>/plots/metrics/<file>``), so one plot per curve shows every experiment."""
    written = []
    for name, rel in TRAINING_CURVES.items():
        rows, value = [], rel.rsplit("/", 1)[-1].removesuffix(".tsv")
        for exp in experiments:
            path = Path(live_dir) / exp / "plots" / "metrics" / rel
            if path.is_file():
                with open(path, newline="") as f:
                    rows += [[exp, r["step"], r[value]] for r in csv.DictReader(f, delimiter="\t")]
        if rows:
            out = Path(plots_dir) / f"{name}.csv"
            with open(out, "w", newline="") as f:
                csv.writer(f).writerows([["experiment", "step", value], *rows])
            written.append(out)
    return written


def write_curves(plots_dir: Path, summaries: dict[str, dict]) -> list[Path]:
    """Every table of ``CURVES`` that at least one summary has data for; returns the files written."""
    written = []
    for name, (x_key, y_key) in CURVES.items():
        if any(y_key in s["curves"] for s in summaries.values()):
            write_curve(Path(plots_dir) / f"{name}.csv", summaries, x_key, y_key)
            written.append(Path(plots_dir) / f"{name}.csv")
    return written


def write_race(path: Path, summaries: dict[str, dict]) -> list[Path]:
    """Long CSV of the S3TA race, ``experiment,glances,steps,acc,worst_acc`` (glances 0 = a model
    without glances; worst_acc also counts transfer from the trained glances), for a heatmap;
    returns the file written, none when no summary has a race."""
    rows = [(exp, g, steps, acc, worst) for exp, s in summaries.items() if "race" in s
            for g, accs, worsts in zip(s["race"]["glances"], s["race"]["acc"], s["race"]["worst_acc"])
            for steps, acc, worst in zip(s["race"]["steps"], accs, worsts)]
    if not rows:
        return []
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["experiment", "glances", "steps", "acc", "worst_acc"])
        writer.writerows((exp, g, steps, f"{acc:.4f}", f"{worst:.4f}") for exp, g, steps, acc, worst in rows)
    return [path]
