"""Evaluate a trained checkpoint with its task's suite and write the results."""
from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import torch

from attnrobust.attacks.suite import AttackConfig, run_suite, select_subset
from attnrobust.checkpoint import model_from_checkpoint, read_checkpoint
from attnrobust.errors import UserError
from attnrobust.io import replace_dir, write_json
from attnrobust.runtime import resolve_device
from attnrobust.tasks import TASKS

# task name -> suite(model, x, y, cfg, *, num_classes, device, task) -> (summary, per-sample columns)
SUITES: dict[str, Callable] = {
    "image": lambda model, x, y, cfg, *, num_classes, device, task: run_suite(
        model, x, y, cfg, num_classes=num_classes, device=device, domain=task.domain),
}


def write_per_sample(path: Path, ids: list[str], columns: dict) -> None:
    """One CSV row per attacked sample: its id, label and the outcome of every attack."""
    names = list(columns)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", *names])
        for i, sample_id in enumerate(ids):
            writer.writerow([sample_id, *(int(columns[k][i]) for k in names)])


def evaluate_checkpoint(experiment: str, model_dir: Path, prepared_dir: Path, out_dir: Path,
                        cfg: AttackConfig) -> dict:
    """Attack ``model_dir``'s checkpoint on the test split; write ``summary.json`` and ``per_sample.csv``."""
    ckpt = read_checkpoint(model_dir)
    if ckpt["meta"].get("experiment") != experiment:
        raise UserError(f"{model_dir}: checkpoint belongs to experiment '{ckpt['meta'].get('experiment')}', "
                        f"not '{experiment}'; re-run `dvc repro train@{experiment}`")
    task = TASKS[ckpt["meta"]["dataset"]]
    model = model_from_checkpoint(ckpt)
    torch.manual_seed(cfg.seed)
    test = task.load(prepared_dir, "test")
    index = select_subset(len(test), cfg.n_samples, cfg.seed)
    summary, columns = SUITES[task.name](model, test.x[index], test.y[index], cfg,
                                         num_classes=ckpt["model"]["kwargs"]["num_classes"],
                                         device=resolve_device(cfg.device), task=task)
    summary["experiment"] = experiment
    with replace_dir(out_dir) as staging:
        write_json(staging / "summary.json", summary)
        write_per_sample(staging / "per_sample.csv", [test.ids[i] if test.ids else str(i) for i in index], columns)
    return summary
