"""Gather every ``results/attack/<exp>/s<seed>/summary.json`` into the git-tracked metrics and plot tables.

Every experiment is trained and attacked once per seed of ``train.seeds``. A summary read here is
the seeds' pooled summary (:func:`pool_summaries`: numbers averaged, a sanity check passed only
if it passed for every seed), with the seeds' own summaries under ``per_seed``; per-sample
outcomes and scores are (seeds, samples) arrays, seed s of every experiment on the same samples.

``metrics/robustness.json`` is shallow, ``{exp: {metric: value}}``, so ``dvc metrics diff``
shows one line per experiment and metric (seed means, with ``<metric>_seed_sd`` beside the
headline ones). Plot tables are long CSVs (an ``experiment`` column)
that the static ``plots:`` section of dvc.yaml points at without naming any experiment.
"""
from __future__ import annotations

import csv
from pathlib import Path

from attnrobust.errors import UserError
from attnrobust.io import read_json

HEADLINE = ("clean_acc", "clean_acc_test", "fgsm_acc", "pgd_acc", "pgd_targeted_acc", "targeted_success", "robust_acc",
            "clean_gap", "clean_hit1", "clean_map", "fgsm_gap", "pgd_gap", "pgd_hit1", "pgd_map", "pgd_margin_gap",
            "robust_gap",
            "pgd_acc_fg_only", "robust_acc_fg_only",  # *_fg_only: threat model B, foreground-only perturbation
            "pgd_suite_acc", "aa_extra_broken",  # attack.suite: standard: our attacks alone, AutoAttack's addition
            "autoattack_acc")  # attack.aa_from: clean only: AutoAttack alone
# plot table -> (x key, y key) in a summary's curves; a table holds the summaries that have its y key
CURVES = {"robustness_vs_eps": ("eps", "eps_acc"), "robustness_vs_steps": ("steps", "steps_acc"),
          "gap_vs_eps": ("eps", "eps_gap"), "gap_vs_steps": ("steps", "steps_gap"),
          "robustness_vs_eps_fg_only": ("eps", "eps_acc_fg_only")}


def seed_dirs(results_dir: Path, name: str, seeds: list[int]) -> list[Path]:
    """``<results_dir>/<name>/s<seed>`` for every seed: what ``<stage>@<name>-<seed>`` writes."""
    return [Path(results_dir) / name / f"s{seed}" for seed in seeds]


def _mean(values: list) -> float:
    return float(sum(values) / len(values))


def pool_summaries(summaries: list[dict], key: str = "") -> dict:
    """One summary for several seeds of an experiment, recursively: numbers that differ are
    averaged (None where no seed has one), lists of equal length element by element, a sanity
    check's ``passed`` holds only if it holds for every seed, any other flag (``unreliable``) if
    it holds for any; texts and anything else come from the first seed."""
    first = summaries[0]
    if len(summaries) == 1:
        return first
    if isinstance(first, dict):
        shared = [k for k in first if all(isinstance(s, dict) and k in s for s in summaries)]
        return {k: pool_summaries([s[k] for s in summaries], k) for k in shared}
    if isinstance(first, bool):
        return all(summaries) if key == "passed" else any(summaries)
    if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in summaries):
        values = [v for v in summaries if v is not None]
        if not values:
            return None
        return values[0] if all(v == values[0] for v in values) else _mean(values)
    if isinstance(first, list) and all(isinstance(s, list) and len(s) == len(first) for s in summaries):
        return [pool_summaries(list(items), key) for items in zip(*summaries)]
    return first


def read_summaries(results_dir: Path, names: list[str], seeds: list[int], stage: str = "attack") -> dict[str, dict]:
    """``{name: pooled summary}`` of ``<results_dir>/<name>/s<seed>/summary.json`` over ``seeds``,
    each written by ``<stage>@<name>-<seed>`` (detectors: ``<stage>@<name>``, every seed); the
    seeds' own summaries are under ``per_seed`` and the seeds under ``seeds``."""
    out = {}
    for name in names:
        per_seed = []
        for seed, folder in zip(seeds, seed_dirs(results_dir, name, seeds)):
            path = folder / "summary.json"
            if not path.is_file():
                target = f"{stage}@{name}-{seed}" if stage == "attack" else f"{stage}@{name}"
                raise UserError(f"{path}: missing; run `dvc repro {target}` first")
            per_seed.append(read_json(path))
        out[name] = {**pool_summaries(per_seed), "per_seed": per_seed, "seeds": list(seeds)}
    return out


def _same_ids(name: str, seeds: list[int], ids: list[list[str]], what: str) -> list[str]:
    if any(i != ids[0] for i in ids):
        raise UserError(f"results/attack/{name}: seeds {seeds} were {what} on different samples; every seed needs the "
                        "same attack.n_samples and attack.seed (re-run `dvc repro attack`)")
    return ids[0]


def read_scores(results_dir: Path, name: str, seeds: list[int]) -> dict | None:
    """``{"ids": [...], "labels": (N, C), "<key>": (seeds, N, ...) float}`` from every seed's
    ``scores.npz`` (per-video scores, latent distances), or None when the seeds have none."""
    import numpy as np

    paths = [d / "scores.npz" for d in seed_dirs(results_dir, name, seeds)]
    if not all(p.is_file() for p in paths):
        return None
    found = []
    for path in paths:
        with np.load(path) as data:
            found.append({k: data[k] for k in data.files})
    ids = _same_ids(name, seeds, [[str(i) for i in f["ids"]] for f in found], "scored")
    out = {"ids": ids}
    for key in found[0]:
        if key == "ids":
            continue
        if key == "labels":
            if any(not np.array_equal(f["labels"], found[0]["labels"]) for f in found):
                raise UserError(f"results/attack/{name}: seeds {seeds} have different labels for the same videos")
            out[key] = found[0][key]
        else:
            out[key] = np.stack([f[key] for f in found])
    return out


def read_clean_test(results_dir: Path, name: str, seeds: list[int]) -> dict | None:
    """``{"ids": [...], "correct": (seeds, N) bool}``: clean top-1 correctness on the whole test
    split from every seed's ``clean_test.npz``, or None when the seeds have none (video)."""
    import numpy as np

    paths = [d / "clean_test.npz" for d in seed_dirs(results_dir, name, seeds)]
    if not all(p.is_file() for p in paths):
        return None
    found = []
    for path in paths:
        with np.load(path) as data:
            found.append(([str(i) for i in data["ids"]], data["correct"].astype(bool)))
    ids = _same_ids(name, seeds, [f[0] for f in found], "evaluated")
    return {"ids": ids, "correct": np.stack([f[1] for f in found])}


def read_per_sample(results_dir: Path, name: str, seeds: list[int]) -> dict | None:
    """``{"ids": [...], "columns": {column: (seeds, n) int array}}`` from every seed's
    ``per_sample.csv`` (one row per attacked sample), or None when the seeds have none (detectors)."""
    import numpy as np

    paths = [d / "per_sample.csv" for d in seed_dirs(results_dir, name, seeds)]
    if not all(p.is_file() for p in paths):
        return None
    tables = []
    for path in paths:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        try:
            columns = {k: np.array([int(r[k]) for r in rows]) for k in (rows[0] if rows else {}) if k != "id"}
        except ValueError as exc:
            raise UserError(f"{path}: not a per-sample table ({exc}); re-run `dvc repro attack@{name}`") from exc
        tables.append(([r["id"] for r in rows], columns))
    ids = _same_ids(name, seeds, [t[0] for t in tables], "attacked")
    shared = [k for k in tables[0][1] if all(k in t[1] for t in tables)]
    return {"ids": ids, "columns": {k: np.stack([t[1][k] for t in tables]) for k in shared}}


SEED_SD = ("clean_acc", "robust_acc", "clean_gap", "robust_gap")  # headline metrics shown with their seed-to-seed sd


def headline_metrics(summaries: dict[str, dict]) -> dict[str, dict]:
    """``{exp: {metric: value}}``: seed means rounded to 4 decimals, the seed-to-seed standard
    deviation of the headline ones (``<metric>_seed_sd``, with two seeds or more), the number of
    seeds and the reliability flag (any seed's evaluation unreliable)."""
    import numpy as np

    metrics = {}
    for exp, s in summaries.items():
        row = {k: round(float(s[k]), 4) for k in HEADLINE if k in s}
        for head, scores in s.get("heads", {}).items():  # attacks/heads.py: the paper's BIM / MIM per head
            row.update({f"{head}_{k}": round(float(v), 4) for k, v in scores.items()
                        if k.startswith(("bim_", "mim_", "worst_"))})
        if "attention" in s.get("race", {}):  # S3TA: do the maps depend on the image (0: never), and on the attack
            att = s["race"]["attention"]
            row["attn_tv"] = round(_mean(att["tv_between_images"]), 4)
            row["attn_tv_adv"] = round(_mean(att["tv_clean_vs_adv"]), 4)
        if "latent" in s:  # protoattn: nearest other-class / own-class prototype distance
            row["latent_ratio"] = round(float(s["latent"]["clean"]["ratio"]), 4)
        per_seed = s.get("per_seed") or [s]
        if len(per_seed) > 1:
            row.update({f"{k}_seed_sd": round(float(np.std([float(p[k]) for p in per_seed], ddof=1)), 4)
                        for k in SEED_SD if all(k in p for p in per_seed)})
        row.update({"eps": s["eps"], "steps": s["steps"], "n": s["n"], "seeds": len(per_seed),
                    "unreliable": bool(s["unreliable"])})
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


def write_training_curves(plots_dir: Path, live_dir: Path, experiments: list[str], seeds: list[int]) -> list[Path]:
    """Long CSVs ``experiment,step,<value>`` gathered from every experiment's dvclive folders
    (``<live_dir>/<exp>/s<seed>/plots/metrics/<file>``), the mean over the seeds that logged a step,
    so one plot per curve shows every experiment."""
    written = []
    for name, rel in TRAINING_CURVES.items():
        rows, value = [], rel.rsplit("/", 1)[-1].removesuffix(".tsv")
        for exp in experiments:
            by_step: dict[int, list[float]] = {}
            for seed in seeds:
                path = Path(live_dir) / exp / f"s{seed}" / "plots" / "metrics" / rel
                if path.is_file():
                    with open(path, newline="") as f:
                        for r in csv.DictReader(f, delimiter="\t"):
                            by_step.setdefault(int(r["step"]), []).append(float(r[value]))
            rows += [[exp, step, f"{_mean(v):.6g}"] for step, v in sorted(by_step.items())]
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
