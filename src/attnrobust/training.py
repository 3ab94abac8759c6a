"""Training loop shared by every method and task: one function per phase, resumable per epoch."""
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
from attnrobust.config import build
from attnrobust.experiment import Experiment
from attnrobust.methods import Batch, Method, get_method
from attnrobust.models import build_model
from attnrobust.runtime import resolve_device, seed_everything, show_progress
from attnrobust.tasks import Task, Tensors, task_for


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


def train_one_epoch(state: TrainState, method: Method, cfg, data: Tensors, task: Task, batch_size: int, device,
                    desc: str) -> dict:
    state.model.train()
    order = torch.randperm(len(data), generator=state.generator)
    total_loss, seen = 0.0, 0
    batches = range(0, len(order), batch_size)
    for start in tqdm(batches, desc=desc, disable=not show_progress(), leave=False):
        idx = order[start:start + batch_size]
        batch = Batch(data.x[idx].to(device), data.y[idx].to(device), data.mask[idx].to(device), task)
        loss = method.loss(state.model, batch, cfg, state.generator)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        state.scheduler.step()
        total_loss += loss.item() * len(idx)
        seen += len(idx)
    return {"loss": total_loss / max(seen, 1)}


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, device, batch_size: int = 512) -> Tensor:
    """Logits for every input, in eval mode, on the CPU."""
    model.eval()
    return torch.cat([model(x[s:s + batch_size].to(device)).float().cpu() for s in range(0, len(x), batch_size)])


def evaluate(model: nn.Module, data: Tensors, task: Task, device) -> dict[str, float]:
    """Clean scores on ``data`` (``clean_acc``, or ``clean_gap`` and ``clean_hit1`` for video)."""
    return {f"clean_{k}": v for k, v in task.score(predict_logits(model, data.x, device), data.y).items()}


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


def build_state(exp: Experiment, cfg: TrainConfig, task: Task, train: Tensors, device, steps: int):
    generator = seed_everything(cfg.seed, cfg.threads)
    spec = model_spec(exp.model, {**task.model_kwargs(train), **exp.model_args})
    model = build_model(spec["name"], **spec["kwargs"]).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=steps, pct_start=0.25)
    return TrainState(model, optimizer, scheduler, generator), spec


def train_experiment(exp: Experiment, cfg: TrainConfig, prepared_dir: Path, out_dir: Path, live_dir: Path,
                     resume_file: Path | None = None) -> dict:
    """Train ``exp`` on ``prepared_dir``; write ``out_dir/model.pt`` and dvclive logs. Returns a summary.

    With ``resume_file`` the state after each epoch is saved there, and a run that finds a state
    for the same config continues from it, ending with the same model as an uninterrupted run.
    """
    cfg = build(TrainConfig, {**dataclasses.asdict(cfg), **exp.train}, f"experiments.{exp.name}.train")
    device = resolve_device(cfg.device)
    task = task_for(exp)
    train, test = task.load(prepared_dir, "train"), task.load(prepared_dir, "test")
    method = get_method(exp.method)
    steps = cfg.epochs * -(-len(train) // cfg.batch_size)
    state, spec = build_state(exp, cfg, task, train, device, steps)
    fingerprint = {"experiment": exp.to_dict(), "train": dataclasses.asdict(cfg), "n": len(train)}
    _try_resume(state, resume_file, fingerprint)
    history = {}
    with Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None, resume=state.epoch > 0) as live:
        while state.epoch < cfg.epochs:
            stats = train_one_epoch(state, method, exp.method_config, train, task, cfg.batch_size, device,
                                    f"{exp.name} epoch {state.epoch + 1}/{cfg.epochs}")
            state.epoch += 1
            history = {"train_loss": stats["loss"], **evaluate(state.model, test, task, device)}
            live.step = state.epoch
            live.log_metric("train/loss", history["train_loss"])
            for key, value in history.items():
                if key != "train_loss":
                    live.log_metric(f"test/{key}", value)
            shown = " ".join(f"{k} {v:.4f}" for k, v in history.items())
            print(f"[train {exp.name}] epoch {state.epoch}/{cfg.epochs} {shown}", file=sys.stderr)
            if resume_file is not None:
                resume_file.parent.mkdir(parents=True, exist_ok=True)
                torch.save({"fingerprint": fingerprint, "state": _resume_blob(state)}, resume_file)
    save_checkpoint(out_dir / "model.pt", state.model.cpu(), spec,
                    {"experiment": exp.name, "config": exp.to_dict(), "train": dataclasses.asdict(cfg),
                     "classes": train.classes, "dataset": exp.dataset, "task": task.name})
    return {"experiment": exp.name, "epochs": cfg.epochs, **history}
