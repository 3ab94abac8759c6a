"""Stage attack@<exp>'s core: evaluate a trained checkpoint with its task's suite and write the results.

A plan above ``attacks`` (the attacks) and ``tasks`` (what the data and threat model are)."""
from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from attnrobust import distributed
from attnrobust.attacks.autoattack import MULTILABEL
from attnrobust.attacks.engine import Engine, top1
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
from attnrobust.tasks import TASKS, TASKS_BY_NAME, Task, Tensors


def _image_suite(model, x, y, cfg, *, num_classes, device, task):
    """Threat model A; the task's perturbation mask keeps a mask channel out of the attacker's reach."""
    return run_suite(model, x, y, cfg, num_classes=num_classes, device=device, domain=task.domain,
                     perturb_mask=task.perturb_mask(x))


# task name -> suite(model, x, y, cfg, *, num_classes, device, task) -> (summary, per-sample columns)
SUITES: dict[str, Callable] = {
    "image": _image_suite,
    "image_fg_mask": _image_suite,
    "image_random_mask": _image_suite,
    "image_mask_only": _image_suite,
    "video": run_video_suite,
}


@dataclass(frozen=True)
class Target:
    """What one attack stage evaluates: the model, its task, the attacked samples and the params."""

    experiment: str
    model: nn.Module
    task: Task
    test: Tensors  # the attacked subset of the test split
    cfg: AttackConfig
    num_classes: int
    device: torch.device


@dataclass(frozen=True)
class Extra:
    """An evaluation beyond the task's suite, for the models it applies to: ``run(target, summary,
    columns) -> (summary, columns, npz arrays by file name)``, extending the suite's results."""

    applies: Callable[[Target], bool]
    run: Callable[[Target, dict, dict], tuple[dict, dict, dict[str, dict]]]


def _foreground_only(t: Target, summary: dict, columns: dict):
    """Threat model B of the mask defence, for masked and unmasked models alike."""
    summary, columns = run_foreground_only(t.model, t.test.x, t.test.y, t.cfg, summary, columns,
                                           perturb_mask=t.task.foreground_perturb_mask(t.test.x, t.test.mask),
                                           device=t.device, domain=t.task.domain)
    return summary, columns, {}


def _heads(t: Target, summary: dict, columns: dict):
    """Nakka & Salzmann's attacks on every head (attacks/heads.py): protoattn and its baselines."""
    summary, columns = run_head_attacks(t.model, t.test.x, t.test.y, t.cfg, summary, columns, device=t.device,
                                        domain=t.task.domain, perturb_mask=t.task.perturb_mask(t.test.x))
    return summary, columns, {}


def _race(t: Target, summary: dict, columns: dict):
    """The S3TA race; glances vary for models that have them."""
    race, attention = run_race(t.model, t.test.x, t.test.y, t.cfg, num_classes=t.num_classes, device=t.device,
                               domain=t.task.domain)
    summary = {**summary, "race": race, "sanity": {**summary["sanity"], **race.pop("sanity")}}
    summary["unreliable"] = not all(c["passed"] for c in summary["sanity"].values())
    return summary, columns, {"attention.npz": attention} if attention else {}


def _is_image(t: Target) -> bool:
    return t.task.domain is Domain.IMAGE


# in order; each sees the results of the ones before it (the heads fold into B's worst case)
EXTRAS: dict[str, Extra] = {
    "foreground_only": Extra(_is_image, _foreground_only),
    "heads": Extra(lambda t: _is_image(t) and (model_heads(t.model) != (SINGLE,)
                                               or t.experiment in t.cfg.head_baselines), _heads),
    "race": Extra(lambda t: t.task.name == "image" and bool(t.cfg.race_steps), _race),
}


TRAINED_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "precision")  # `train` keys that shape a model


def trained_as(meta: dict) -> dict:
    """What the checkpoint was trained as, from its own record: the experiment (dataset, method,
    model, model_args, every method key, defaults included) and the effective `train` keys that
    can change the model; not the seed (claims pair seeds), device, threads or nproc. The claims
    compare two runs' records to show what they differ in."""
    config = {k: v for k, v in (meta.get("config") or {}).items() if k != "train"}
    train = meta.get("train") or {}
    return {**config, "train": {k: train[k] for k in TRAINED_KEYS if k in train}}


def clean_test_split(model: nn.Module, test: Tensors, cfg: AttackConfig, device: torch.device) -> np.ndarray:
    """Top-1 correctness of every image of the test split, clean: one forward pass each, in the
    attack's precision and eval mode, so a clean-accuracy claim pairs every test image rather than
    the ``attack.n_samples`` attacked ones (``clean_test.npz``; the attacked subset's ``clean_correct``
    is the same model on a subset of these)."""
    engine = Engine(model, test.x, test.y, cfg, device=device, desc="clean", shard=False)
    return (engine.read(None, top1) == test.y).numpy()


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
    device = resolve_device(cfg.device)
    model = autocast_forward(model_from_checkpoint(ckpt), device, cfg.precision)  # fp32 out
    torch.manual_seed(cfg.seed)
    test = task.load(prepared_dir, "test")
    index = select_subset(len(test), cfg.n_samples, cfg.seed)
    if len(index) < distributed.world_size():  # every process attacks a share of the samples
        raise UserError(f"attack: {distributed.world_size()} processes for {len(index)} samples; "
                        f"use at most as many processes (nproc) as attacked samples (n_samples)")
    rows = torch.from_numpy(index)
    target = Target(experiment, model, task, Tensors(test.x[rows], test.y[rows], test.mask[rows]), cfg,
                    ckpt["model"]["kwargs"]["num_classes"], device)
    summary, columns = SUITES[task.name](model, target.test.x, target.test.y, cfg, num_classes=target.num_classes,
                                         device=device, task=task)
    arrays: dict[str, dict] = {}
    for extra in EXTRAS.values():
        if extra.applies(target):
            summary, columns, files = extra.run(target, summary, columns)
            arrays |= files
    if cfg.suite == "standard" and task.multilabel:  # AutoAttack is a single-label classification attack
        summary.setdefault("autoattack", MULTILABEL)
    clean_test = None
    if task.domain is Domain.IMAGE and not task.multilabel:
        clean_test = clean_test_split(model, test, cfg, device)
        summary["clean_acc_test"], summary["n_test"] = float(clean_test.mean()), len(clean_test)
    summary["experiment"] = experiment
    summary["train_seed"] = (meta.get("train") or {}).get("seeds", [None])[0]  # train@<exp>-<seed>'s seed
    summary["trained_as"] = trained_as(meta)
    if not distributed.is_main():  # the others took their share of every attack above; one process writes
        return summary
    if task.domain is Domain.IMAGE:  # a few clean / adversarial / targeted inputs for the report's figures
        arrays["examples.npz"] = adversarial_examples(model, target.test.x, target.test.y, cfg,
                                                      num_classes=target.num_classes, device=device,
                                                      domain=task.domain, perturb_mask=task.perturb_mask(target.test.x),
                                                      classes=test.classes)
    with replace_dir(out_dir) as staging:
        write_json(staging / "summary.json", summary)
        for name, values in arrays.items():
            if values:
                save_npz(staging / name, **values)
        ids = [test.ids[i] if test.ids else str(i) for i in index]
        outcomes = {k: v for k, v in columns.items() if v.ndim == 1 and v.dtype.kind in "biu"}
        write_per_sample(staging / "per_sample.csv", ids, outcomes)
        if clean_test is not None:
            every = [test.ids[i] if test.ids else str(i) for i in range(len(test))]
            save_npz(staging / "clean_test.npz", ids=np.asarray(every), correct=clean_test)
        if scores := {k: v for k, v in columns.items() if k not in outcomes}:  # per-video scores, latent distances
            save_npz(staging / "scores.npz", ids=np.asarray(ids), **scores)
    return summary
