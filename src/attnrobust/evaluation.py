"""Stage attack@<exp>'s core: evaluate a trained checkpoint with its task's suite and write the results.

A plan above ``attacks`` (the attacks) and ``tasks`` (what the data and threat model are)."""
from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from attnrobust import distributed
from attnrobust.attacks.autoattack import MULTILABEL
from attnrobust.units import Domain
from attnrobust.attacks.examples import adversarial_examples
from attnrobust.attacks.heads import SINGLE, model_heads, run_head_attacks
from attnrobust.attacks.race import run_race
from attnrobust.attacks.suite import AttackConfig, run_foreground_only, run_suite, select_subset
from attnrobust.attacks.video_suite import run_video_suite
from attnrobust.checkpoint import model_from_checkpoint, read_checkpoint
from attnrobust.errors import UserError
from attnrobust.io import replace_dir, save_npz, write_json
from attnrobust.runtime import autocast_forward, resolve_device
from attnrobust.tasks import TASKS, TASKS_BY_NAME


def _image_suite(model, x, y, cfg, *, num_classes, device, task):
    """Threat model A; the task's perturbation mask keeps a mask channel out of the attacker's reach."""
    return run_suite(model, x, y, cfg, num_classes=num_classes, device=device, domain=task.domain,
                     perturb_mask=task.perturb_mask(x))


# task name -> suite(model, x, y, cfg, *, num_classes, device, task) -> (summary, per-sample columns)
SUITES: dict[str, Callable] = {
    "image": _image_suite,
    "image_fg_mask": _image_suite,
    "image_random_mask": _image_suite,
    "video": run_video_suite,
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
                        f"not '{experiment}'; re-run `dvc repro train@{experiment}-<seed>`")
    meta = ckpt["meta"]
    task = TASKS_BY_NAME[meta["task"]] if "task" in meta else TASKS[meta["dataset"]]
    model = autocast_forward(model_from_checkpoint(ckpt), resolve_device(cfg.device), cfg.precision)  # fp32 out
    torch.manual_seed(cfg.seed)
    test = task.load(prepared_dir, "test")
    index = select_subset(len(test), cfg.n_samples, cfg.seed)
    if len(index) < distributed.world_size():  # every process attacks a share of the samples
        raise UserError(f"attack: {distributed.world_size()} processes for {len(index)} samples; "
                        f"use at most as many processes (nproc) as attacked samples (n_samples)")
    summary, columns = SUITES[task.name](model, test.x[index], test.y[index], cfg,
                                         num_classes=ckpt["model"]["kwargs"]["num_classes"],
                                         device=resolve_device(cfg.device), task=task)
    if task.domain is Domain.IMAGE:  # threat model B of the mask defence, for masked and unmasked models alike
        x = test.x[index]
        summary, columns = run_foreground_only(
            model, x, test.y[index], cfg, summary, columns,
            perturb_mask=task.foreground_perturb_mask(x, test.mask[index]), device=resolve_device(cfg.device),
            domain=task.domain)
        if model_heads(model) != (SINGLE,) or experiment in cfg.head_baselines:  # protoattn and its baselines
            summary, columns = run_head_attacks(  # Nakka & Salzmann's attacks on every head (attacks/heads.py)
                model, x, test.y[index], cfg, summary, columns, device=resolve_device(cfg.device),
                domain=task.domain, perturb_mask=task.perturb_mask(x))
    attention = {}
    if task.name == "image" and cfg.race_steps:  # the S3TA race; glances vary for models that have them
        summary["race"], attention = run_race(model, test.x[index], test.y[index], cfg,
                                              num_classes=ckpt["model"]["kwargs"]["num_classes"],
                                              device=resolve_device(cfg.device), domain=task.domain)
        summary["sanity"].update(summary["race"].pop("sanity"))
        summary["unreliable"] = not all(c["passed"] for c in summary["sanity"].values())
    if cfg.suite == "standard" and task.multilabel:  # AutoAttack is a single-label classification attack
        summary.setdefault("autoattack", MULTILABEL)
    summary["experiment"] = experiment
    summary["train_seed"] = (meta.get("train") or {}).get("seeds", [None])[0]  # train@<exp>-<seed>'s seed
    if not distributed.is_main():  # the others took their share of every attack above; one process writes
        return summary
    examples = {}
    if task.domain is Domain.IMAGE:  # a few clean / adversarial / targeted inputs for the report's figures
        examples = adversarial_examples(model, test.x[index], test.y[index], cfg,
                                        num_classes=ckpt["model"]["kwargs"]["num_classes"],
                                        device=resolve_device(cfg.device), domain=task.domain,
                                        perturb_mask=task.perturb_mask(test.x[index]), classes=test.classes)
    with replace_dir(out_dir) as staging:
        write_json(staging / "summary.json", summary)
        if attention:
            save_npz(staging / "attention.npz", **attention)
        if examples:
            save_npz(staging / "examples.npz", **examples)
        ids = [test.ids[i] if test.ids else str(i) for i in index]
        outcomes = {k: v for k, v in columns.items() if v.ndim == 1 and v.dtype.kind in "biu"}
        write_per_sample(staging / "per_sample.csv", ids, outcomes)
        if scores := {k: v for k, v in columns.items() if k not in outcomes}:  # per-video scores, latent distances
            save_npz(staging / "scores.npz", ids=np.asarray(ids), **scores)
    return summary
