"""Everything the report reads, loaded once, with absence as a normal state.

The report runs after ``metrics`` on whatever the pipeline produced: an experiment removed from
params.yaml, a detector stage not built yet, or a results folder from an older run without
``examples.npz`` leave a hole that the report names (:mod:`attnrobust.report.markdown`), never
a crash. Only a file that exists but cannot be parsed is an error, naming the file and the fix.
"""
from __future__ import annotations

import csv
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attnrobust.errors import UserError


@dataclass(frozen=True)
class Curve:
    """A plot table (``metrics/plots/<name>.csv``): one x axis, one series per experiment; NaN
    where an experiment was not measured at that x."""

    x_name: str
    x: list[float]
    series: dict[str, list[float]]


@dataclass(frozen=True)
class RunInfo:
    """What was run, from params.yaml: ``data.source``, ``experiments`` and the shared ``train``."""

    data_source: str = "unknown"
    profile: str = "default"
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)

    def seeds(self) -> list[int]:
        """``train.seeds``: every experiment's results are in ``results/attack/<exp>/s<seed>/``."""
        return [int(x) for x in self.train.get("seeds") or [0]]

    def dataset_of(self, experiment: str) -> str:
        """The experiment's dataset; the name's prefix when params do not list it (``gtsrb_x`` -> gtsrb)."""
        spec = self.experiments.get(experiment, {})
        return str(spec.get("dataset", experiment.split("_")[0]))


@dataclass
class ReportInputs:
    """The report's inputs; ``None`` or empty where the file was absent."""

    run: RunInfo
    robustness: dict[str, dict] | None = None  # metrics/robustness.json
    claims: dict[str, dict] | None = None  # metrics/claims.json
    curves: dict[str, Curve] = field(default_factory=dict)  # metrics/plots/<name>.csv, by name
    race: list[dict] | None = None  # metrics/plots/race.csv rows
    roc: dict[str, tuple[list[float], list[float]]] | None = None  # metrics/plots/roc.csv: curve -> (fpr, tpr)
    summaries: dict[str, dict] = field(default_factory=dict)  # results/attack/<exp>/s<seed>/summary.json, pooled
    attention: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # <exp>/s<first seed>/attention.npz
    examples: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # <exp>/s<first seed>/examples.npz
    detect: dict[str, dict] = field(default_factory=dict)  # results/detect/<name>/s<seed>/summary.json, pooled
    env: dict[str, dict] | None = None  # metrics/env.json: {"evaluation": {...}, "training": {...}}
    beside: dict[str, Any] | None = None  # a committed run of another profile (runs/<name>/), see load_beside
    missing: list[str] = field(default_factory=list)  # inputs looked for and not found, for the report

    def experiments(self) -> list[str]:
        """Experiments in params order, then any others that have results."""
        names = list(self.run.experiments)
        extra = sorted({*(self.robustness or {}), *self.summaries} - set(names))
        return [n for n in names if n in (self.robustness or {}) or n in self.summaries] + extra


def _bad(path: Path, exc: Exception) -> UserError:
    return UserError(f"{path}: cannot be read ({exc}); re-run the stage that writes it (`dvc repro`)")


def _json(path: Path, missing: list[str]) -> Any:
    if not path.is_file():
        missing.append(str(path))
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise _bad(path, exc) from exc


def _rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise _bad(path, exc) from exc


def _number(value: str) -> float:
    return float(value) if value not in ("", None) else math.nan


def read_curve(path: Path) -> Curve:
    """A long CSV (``experiment,<x>,<value>``, :func:`attnrobust.metrics.aggregate.write_curve`)
    as one x axis and a series per experiment, in file order."""
    rows = _rows(path)
    if not rows:
        return Curve(path.stem, [], {})
    try:
        _, x_name, y_name = rows[0].keys()
        xs = sorted({_number(r[x_name]) for r in rows})
        points: dict[str, dict[float, float]] = {}
        for r in rows:
            points.setdefault(r["experiment"], {})[_number(r[x_name])] = _number(r[y_name])
    except (KeyError, ValueError) as exc:
        raise _bad(path, exc) from exc
    return Curve(x_name, xs, {exp: [p.get(x, math.nan) for x in xs] for exp, p in points.items()})


def read_race(path: Path) -> list[dict]:
    """``experiment,glances,steps,acc,worst_acc`` rows with numbers parsed."""
    try:
        return [{"experiment": r["experiment"], "glances": int(r["glances"]), "steps": int(r["steps"]),
                 "acc": float(r["acc"]), "worst_acc": float(r.get("worst_acc") or r["acc"])} for r in _rows(path)]
    except (KeyError, ValueError) as exc:
        raise _bad(path, exc) from exc


def read_roc(path: Path) -> dict[str, tuple[list[float], list[float]]]:
    """``curve,fpr,tpr`` rows grouped by curve, in file order."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    try:
        for r in _rows(path):
            fpr, tpr = out.setdefault(r["curve"], ([], []))
            fpr.append(float(r["fpr"]))
            tpr.append(float(r["tpr"]))
    except (KeyError, ValueError) as exc:
        raise _bad(path, exc) from exc
    return out


def read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise _bad(path, exc) from exc


def load_inputs(run: RunInfo, *, metrics: Path, claims: Path, plots: Path, results: Path,
                detect: Path | None = None, env: Path | None = None, beside: Path | None = None) -> ReportInputs:
    """Read every input that exists; record what was looked for and not found in ``missing``."""
    inp = ReportInputs(run)
    inp.beside = load_beside(beside, inp.missing) if beside is not None else None
    inp.robustness = _json(Path(metrics), inp.missing)
    inp.claims = _json(Path(claims), inp.missing)
    inp.env = _json(Path(env), inp.missing) if env is not None else None
    plots = Path(plots)
    for path in sorted(plots.glob("*.csv")):
        if path.stem == "race":
            inp.race = read_race(path)
        elif path.stem == "roc":
            inp.roc = read_roc(path)
        else:
            inp.curves[path.stem] = read_curve(path)
    results, seeds = Path(results), run.seeds()
    for exp in run.experiments or sorted(p.name for p in results.glob("*") if p.is_dir()):
        summary = _pooled(results / exp, seeds, inp.missing)
        if summary is not None:
            inp.summaries[exp] = summary
        first = results / exp / f"s{seeds[0]}"  # pictures of one seed's model
        for name, store in (("attention.npz", inp.attention), ("examples.npz", inp.examples)):
            if (first / name).is_file():
                store[exp] = read_npz(first / name)
    if detect is not None:
        for folder in sorted(p for p in Path(detect).glob("*") if p.is_dir()):
            found = _pooled(folder, seeds, inp.missing)
            if found is not None:
                inp.detect[folder.name] = found
    return inp


BESIDE_FILES = ("run.json", "metrics/robustness.json", "metrics/verdicts.json", "metrics/claims.json",
                "metrics/detection.json", "metrics/env.json")


def load_beside(folder: Path, missing: list[str]) -> dict[str, Any] | None:
    """A committed run of another profile, ``runs/<name>/`` (``run.json``: its profile, command and
    time; ``metrics/``: its metrics files), as ``{"dir", "run", "robustness", ...}``; None, recorded
    as missing, when a file is absent."""
    folder = Path(folder)
    found = {name: _json(folder / name, missing) for name in BESIDE_FILES}
    if any(v is None for v in found.values()):
        return None
    return {"dir": folder.as_posix(), **{Path(name).stem: v for name, v in found.items()}}


def _pooled(folder: Path, seeds: list[int], missing: list[str]) -> dict | None:
    """The seeds' summaries (``<folder>/s<seed>/summary.json``) pooled as the metrics stage pools
    them; None (recorded as missing) when any seed's is absent."""
    from attnrobust.metrics.aggregate import pool_summaries

    found = [_json(folder / f"s{seed}" / "summary.json", missing) for seed in seeds]
    if any(f is None for f in found):
        return None
    return {**pool_summaries(found), "per_seed": found, "seeds": seeds}
