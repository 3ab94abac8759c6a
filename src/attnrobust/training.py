"""Training loop shared by every image method: one function per phase, resumable per epoch."""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from dvclive import Live
from torch import Tensor, nn
from tqdm import tqdm

from attnrobust.checkpoint import model_spec, save_checkpoint
from attnrobust.data.prepared import load_prepared, read_meta
from attnrobust.experiment import Experiment
from attnrobust.methods import Batch, Method, get_method
from attnrobust.models import build_model
from attnrobust.runtime import resolve_device, seed_everything, show_progress


@dataclass(frozen=True)
class TrainConfig:
    epochs: int  # passes over the training split
    batch_size: int  # samples per optimiser step
    lr: float  # peak Adam learning rate of the one-cycle schedule
    weight_decay: float  # decoupled (AdamW) weight decay
    seed: int  # seeds init, shuffling and training-time attacks
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0  # torch CPU threads; 0 = torch's default

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("need epochs >= 1, batch_size >= 1, lr > 0, weight_decay >= 0")


@dataclass
class TrainState:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    epoch: int = 0


def channel_stats(images: Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of (N, 3, H, W) images, for the model's own normalisation."""
    return images.mean(dim=(0, 2, 3)).tolist(), images.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()


def train_one_epoch(state: TrainState, method: Method, cfg, data, batch_size: int, device, desc: str) -> dict:
    images, labels, masks = data
    state.model.train()
    order = torch.randperm(len(labels), generator=state.generator)
    total_loss, seen = 0.0, 0
    batches = range(0, len(order), batch_size)
    for start in tqdm(batches, desc=desc, disable=not show_progress(), leave=False):
        idx = order[start:start + batch_size]
        batch = Batch(images[idx].to(device), labels[idx].to(device), masks[idx].to(device))
        loss = method.loss(state.model, batch, cfg, state.generator)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        state.scheduler.step()
        total_loss += loss.item() * len(idx)
        seen += len(idx)
    return {"loss": total_loss / max(seen, 1)}


@torch.no_grad()
def evaluate(model: nn.Module, images: Tensor, labels: Tensor, device, batch_size: int = 512) -> float:
    """Clean top-1 accuracy in eval mode."""
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        logits = model(images[start:start + batch_size].to(device))
        correct += (logits.argmax(1).cpu() == labels[start:start + batch_size]).sum().item()
    return correct / max(len(labels), 1)


def _resume_blob(state: TrainState) -> dict:
    return {"epoch": state.epoch, "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(), "generator": state.generator.get_state()}


def _try_resume(state: TrainState, resume_file: Path | None, fingerprint: dict) -> None:
    if resume_file is None or not resume_file.is_file():
        return
    blob = torch.load(resume_file, map_location="cpu", weights_only=True)
    if blob.get("fingerprint") != fingerprint:
        print(f"[train] {resume_file}: stale resume state (config changed), starting over", file=sys.stderr)
        return
    state.model.load_state_dict(blob["state"]["model"])
    state.optimizer.load_state_dict(blob["state"]["optimizer"])
    state.scheduler.load_state_dict(blob["state"]["scheduler"])
    state.generator.set_state(blob["state"]["generator"])
    state.epoch = blob["state"]["epoch"]
    print(f"[train] resuming from {resume_file} after epoch {state.epoch}", file=sys.stderr)


def build_state(exp: Experiment, cfg: TrainConfig, train_images: Tensor, num_classes: int, device, steps: int):
    generator = seed_everything(cfg.seed, cfg.threads)
    mean, std = channel_stats(train_images)
    spec = model_spec(exp.model, num_classes, mean, std, exp.model_args)
    model = build_model(exp.model, num_classes=num_classes, mean=mean, std=std, **exp.model_args).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=steps, pct_start=0.25)
    return TrainState(model, optimizer, scheduler, generator), spec


def train_experiment(exp: Experiment, cfg: TrainConfig, prepared_dir: Path, out_dir: Path, live_dir: Path,
                     resume_file: Path | None = None) -> dict:
    """Train ``exp`` on ``prepared_dir``; write ``out_dir/model.pt`` and dvclive logs. Returns a summary.

    With ``resume_file`` the state after each epoch is saved there, and a run that finds a state
    for the same config continues from it, ending with the same model as an uninterrupted run.
    """
    device = resolve_device(cfg.device)
    meta = read_meta(prepared_dir)
    train = load_prepared(prepared_dir, "train")
    test = load_prepared(prepared_dir, "test")
    method = get_method(exp.method)
    steps = cfg.epochs * -(-len(train[1]) // cfg.batch_size)
    state, spec = build_state(exp, cfg, train[0], len(meta["classes"]), device, steps)
    fingerprint = {"experiment": exp.to_dict(), "train": dataclasses.asdict(cfg), "n": len(train[1])}
    _try_resume(state, resume_file, fingerprint)
    history = {}
    with Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None, resume=state.epoch > 0) as live:
        while state.epoch < cfg.epochs:
            stats = train_one_epoch(state, method, exp.method_config, train, cfg.batch_size, device,
                                    f"{exp.name} epoch {state.epoch + 1}/{cfg.epochs}")
            state.epoch += 1
            history = {"train_loss": stats["loss"], "clean_acc": evaluate(state.model, test[0], test[1], device)}
            live.step = state.epoch
            live.log_metric("train/loss", history["train_loss"])
            live.log_metric("test/clean_acc", history["clean_acc"])
            print(f"[train {exp.name}] epoch {state.epoch}/{cfg.epochs} loss {history['train_loss']:.4f} "
                  f"clean_acc {history['clean_acc']:.4f}", file=sys.stderr)
            if resume_file is not None:
                resume_file.parent.mkdir(parents=True, exist_ok=True)
                torch.save({"fingerprint": fingerprint, "state": _resume_blob(state)}, resume_file)
    save_checkpoint(out_dir / "model.pt", state.model.cpu(), spec,
                    {"experiment": exp.name, "config": exp.to_dict(), "train": dataclasses.asdict(cfg),
                     "classes": meta["classes"], "dataset": exp.dataset})
    return {"experiment": exp.name, "epochs": cfg.epochs, **history}
