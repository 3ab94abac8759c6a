"""Gather every ``results/attack/<exp>/summary.json`` into the git-tracked metrics and plot tables.

``metrics/robustness.json`` is shallow, ``{exp: {metric: value}}``, so ``dvc metrics diff``
shows one line per experiment and metric. Plot tables are wide CSVs (one column per experiment)
that the static ``plots:`` section of dvc.yaml points at.
"""
from __future__ import annotations

import csv
from pathlib import Path

from attnrobust.errors import UserError
from attnrobust.io import read_json

HEADLINE = ("clean_acc", "fgsm_acc", "pgd_acc", "pgd_targeted_acc", "targeted_success", "robust_acc")


def read_summaries(results_dir: Path, experiments: list[str]) -> dict[str, dict]:
    out = {}
    for exp in experiments:
        path = Path(results_dir) / exp / "summary.json"
        if not path.is_file():
            raise UserError(f"{path}: missing; run `dvc repro attack@{exp}` first")
        out[exp] = read_json(path)
    return out


def headline_metrics(summaries: dict[str, dict]) -> dict[str, dict]:
    """``{exp: {metric: value}}`` with accuracies rounded to 4 decimals and the reliability flag."""
    metrics = {}
    for exp, s in summaries.items():
        row = {k: round(float(s[k]), 4) for k in HEADLINE if k in s}
        row.update({"eps": s["eps"], "steps": s["steps"], "n": s["n"], "unreliable": bool(s["unreliable"])})
        failed = sorted(k for k, c in s["sanity"].items() if not c["passed"])
        row["failed_checks"] = ",".join(failed) if failed else "none"
        metrics[exp] = row
    return metrics


def write_curve(path: Path, summaries: dict[str, dict], x_key: str, y_key: str) -> None:
    """Wide CSV: one row per x value, one column per experiment (blank where not measured)."""
    xs = sorted({x for s in summaries.values() for x in s["curves"][x_key]})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([x_key, *summaries])
        for x in xs:
            row = [x]
            for s in summaries.values():
                lookup = dict(zip(s["curves"][x_key], s["curves"][y_key]))
                row.append("" if x not in lookup else f"{lookup[x]:.4f}")
            writer.writerow(row)
