"""Training loop shared by every method and task: one function per phase, resumable per epoch."""
from __future__ import annotations

import contextlib
import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from dvclive import Live
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from attnrobust import distributed
from attnrobust.checkpoint import model_spec, save_checkpoint
from attnrobust.config import build
from attnrobust.errors import UserError
from attnrobust.experiment import Experiment
from attnrobust.methods import Batch, Method, get_method
from attnrobust.models import build_model
from attnrobust.runtime import autocast_forward, resolve_device, seed_everything, show_progress
from attnrobust.tasks import Task, Tensors, task_for


@dataclass(frozen=True)
class TrainConfig:
    epochs: int  # passes over the training split
    batch_size: int  # samples per optimiser step
    lr: float  # peak Adam learning rate of the one-cycle schedule
    weight_decay: float  # decoupled (AdamW) weight decay
    seeds: list[int]  # one model per seed (init, shuffling, training-time attacks): train@<exp>-<seed>
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 2  # torch CPU threads; 0 = torch's default
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # forward passes: auto = bf16 autocast on CUDA, else fp32
    nproc: int = 1  # processes (GPUs) per machine; > 1 = DistributedDataParallel under torchrun, same global batch

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("need epochs >= 1, batch_size >= 1, lr > 0, weight_decay >= 0")
        if self.nproc < 1:
            raise ValueError("need nproc >= 1")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds: need a non-empty list of distinct seeds >= 0, got {self.seeds}")

    @property
    def seed(self) -> int:
        """The one seed of a training run (:func:`experiment_config` narrows ``seeds`` to it)."""
        if len(self.seeds) != 1:
            raise ValueError(f"a training run has one seed; this config has {self.seeds} "
                             "(build it with experiment_config(exp, cfg, seed))")
        return self.seeds[0]


@dataclass
class TrainState:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    epoch: int = 0
    log: list[dict] = field(default_factory=list)  # each finished epoch's metrics (replayed into dvclive on resume)


def train_one_epoch(state: TrainState, method: Method, cfg, data: Tensors, task: Task, batch_size: int, device,
                    desc: str) -> dict:
    state.model.train()
    order = distributed.broadcast(torch.randperm(len(data), generator=state.generator))  # one order for all
    total_loss, seen = 0.0, 0
    batches = range(0, len(order), batch_size)
    for start in tqdm(batches, desc=desc, disable=not show_progress(), leave=False):
        idx = order[start:start + batch_size]
        rows, mine = _my_rows(idx)
        batch = Batch(data.x[rows].to(device), data.y[rows].to(device), data.mask[rows].to(device), task)
        loss = method.loss(state.model, batch, cfg, state.generator)
        state.optimizer.zero_grad(set_to_none=True)
        # DDP averages gradients over processes; weighing each by its share of the global batch makes
        # that the gradient of the global batch's mean loss (the weight is exactly 1 for one process)
        (loss * (mine * distributed.world_size() / len(idx))).backward()
        state.optimizer.step()
        state.scheduler.step()
        total_loss += loss.item() * mine
        seen += mine
    total_loss, seen = distributed.sum_over_processes([total_loss, seen])
    return {"loss": total_loss / max(seen, 1)}


def _my_rows(idx: Tensor) -> tuple[Tensor, int]:
    """This process's contiguous share of the global batch ``idx`` and its size (all of it for one
    process). A process whose share is empty (a last batch smaller than the number of processes)
    gets the first row as a stand-in, weighted 0, so that it still joins the gradient all-reduce."""
    rows = idx[distributed.shard(len(idx))]
    return (rows, len(rows)) if len(rows) else (idx[:1], 0)


class _MethodLoss(nn.Module):
    """A method's loss on one batch as the forward of a module that holds the model.

    DistributedDataParallel all-reduces, in the backward that follows its forward, the gradients
    of the parameters that forward used. A method's loss calls the model several times: a
    training-time attack (eval mode, input gradients only, parameters frozen), random-target
    probes, clean and adversarial passes, ``forward_with_attention``. Run as one DDP forward, all
    of that needs no change in the methods; calling DDP per pass would instead arm the reducer
    for every attack step without a backward.
    """

    def __init__(self, model: nn.Module, loss) -> None:
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, batch: Batch, cfg, generator: torch.Generator) -> Tensor:
        return self.loss(self.model, batch, cfg, generator)


def _distributed(state: TrainState, method: Method, cfg: TrainConfig, device) -> Method:
    """This process's part of a DistributedDataParallel run; returns ``method`` with its loss under DDP.

    * every process builds the same model (same seed; DDP also broadcasts process 0's), then
      draws its own random starts, targets and dropout (:func:`distributed.rank_seed`);
    * on CUDA, BatchNorm becomes SyncBatchNorm: statistics over the global batch, as one process
      computes them. gloo on the CPU has none (torch refuses CPU tensors there), so each process
      normalises with its own share's statistics; DDP gives every process process 0's running
      statistics at each forward, and process 0's model is the one saved;
    * ``find_unused_parameters`` only for methods with phases (``begin_epoch`` may freeze
      parameters; frozen ones keep no gradient under DDP either): every model's loss uses all its
      parameters otherwise, and the search costs a pass over the autograd graph per step.
    """
    seed = distributed.rank_seed(cfg.seed)
    state.generator.manual_seed(seed)
    torch.manual_seed(seed)
    if device.type == "cuda":
        state.model = nn.SyncBatchNorm.convert_sync_batchnorm(state.model)  # same parameters: optimiser unchanged
    ddp = DistributedDataParallel(_MethodLoss(state.model, method.loss),
                                  find_unused_parameters=method.begin_epoch is not None)

    def ddp_loss(model: nn.Module, batch: Batch, method_cfg, generator: torch.Generator) -> Tensor:
        return ddp(batch, method_cfg, generator)  # ``model`` is state.model, inside ``ddp``

    return dataclasses.replace(method, loss=ddp_loss)


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, device, batch_size: int = 512) -> Tensor:
    """Logits for every input, in eval mode, on the CPU."""
    model.eval()
    return torch.cat([model(x[s:s + batch_size].to(device)).float().cpu() for s in range(0, len(x), batch_size)])


def evaluate(model: nn.Module, data: Tensors, task: Task, device) -> dict[str, float]:
    """Clean scores on ``data`` (``clean_acc``, or ``clean_gap`` and ``clean_hit1`` for video)."""
    return {f"clean_{k}": v for k, v in task.score(predict_logits(model, data.x, device), data.y).items()}


def _resume_blob(state: TrainState, generators: list[Tensor]) -> dict:
    """``generators``: every process's generator state (several processes draw their own)."""
    blob = {"epoch": state.epoch, "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(), "generator": state.generator.get_state(), "log": state.log,
            "torch_rng": torch.get_rng_state()}  # dropout draws from torch's global generator
    return {**blob, "rank_generators": generators} if len(generators) > 1 else blob


def _save_resume(resume_file: Path, fingerprint: dict, state: TrainState, generators: list[Tensor]) -> None:
    """Write the resume state atomically (temp file + rename): a kill while saving, which is as
    likely as a kill anywhere else, leaves the previous epoch's state, never a truncated file."""
    resume_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = resume_file.with_name(f".{resume_file.name}.tmp")
    torch.save({"fingerprint": fingerprint, "state": _resume_blob(state, generators)}, tmp)
    tmp.replace(resume_file)


def _try_resume(state: TrainState, resume_file: Path | None, fingerprint: dict) -> None:
    if resume_file is None or not resume_file.is_file():
        return
    try:
        blob = torch.load(resume_file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for unreadable files; the state is only a shortcut
        print(f"[train] {resume_file}: unreadable resume state ({type(exc).__name__}), starting over", file=sys.stderr)
        return
    if not isinstance(blob, dict) or blob.get("fingerprint") != fingerprint:
        print(f"[train] {resume_file}: stale resume state (config changed), starting over", file=sys.stderr)
        return
    state.model.load_state_dict(blob["state"]["model"])
    state.optimizer.load_state_dict(blob["state"]["optimizer"])
    state.scheduler.load_state_dict(blob["state"]["scheduler"])
    generators = blob["state"].get("rank_generators") or [blob["state"]["generator"]]  # one per process
    state.generator.set_state(generators[distributed.rank()])
    if "torch_rng" in blob["state"] and distributed.world_size() == 1:  # several processes: each its own dropout
        torch.set_rng_state(blob["state"]["torch_rng"])
    state.epoch = blob["state"]["epoch"]
    state.log = list(blob["state"].get("log", []))
    print(f"[train] resuming from {resume_file} after epoch {state.epoch}", file=sys.stderr)


def _live(live_dir: Path) -> Live:
    return Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None)


def _log_epoch(live: Live | None, epoch: int, history: dict[str, float]) -> None:
    if live is None:  # not process 0, which logs for all
        return
    live.step = epoch
    live.log_metric("train/loss", history["train_loss"])
    for key, value in history.items():
        if key != "train_loss":
            live.log_metric(f"test/{key}", value)


def build_state(exp: Experiment, cfg: TrainConfig, task: Task, train: Tensors, device, steps: int):
    generator = seed_everything(cfg.seed, cfg.threads)
    spec = model_spec(exp.model, {**task.model_kwargs(train), **exp.model_args})
    model = build_model(spec["name"], **spec["kwargs"]).to(device)
    autocast_forward(model, device, cfg.precision)  # bf16 inside the network (training attack too), fp32 losses
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=steps, pct_start=0.25)
    return TrainState(model, optimizer, scheduler, generator), spec


def experiment_config(exp: Experiment, cfg: TrainConfig, seed: int | None = None) -> TrainConfig:
    """The shared ``train`` section with the experiment's own overrides (``experiments.<exp>.train``),
    for the run with ``seed``, one of ``train.seeds`` (every experiment is trained once per seed;
    None: the first of them)."""
    if "seeds" in exp.train:
        raise UserError(f"experiments.{exp.name}.train.seeds: seeds are shared by every experiment (the pipeline "
                        "pairs their runs seed by seed); set train.seeds instead")
    if seed is None:
        seed = cfg.seeds[0]
    if seed not in cfg.seeds:
        raise UserError(f"seed {seed} is not in train.seeds {cfg.seeds}; add it there (params.yaml or "
                        "`-S 'train.seeds=[...]'`)")
    return build(TrainConfig, {**dataclasses.asdict(cfg), **exp.train, "seeds": [seed]},
                 f"experiments.{exp.name}.train")


def train_experiment(exp: Experiment, cfg: TrainConfig, prepared_dir: Path, out_dir: Path, live_dir: Path,
                     resume_file: Path | None = None, seed: int | None = None) -> dict:
    """Train ``exp`` on ``prepared_dir``; write ``out_dir/model.pt`` and dvclive logs. Returns a summary.

    With ``resume_file`` the state after each epoch is saved there, and a run that finds a state
    for the same config continues from it, ending with the same model as an uninterrupted run.
    """
    cfg = experiment_config(exp, cfg, seed)
    device = resolve_device(cfg.device)
    task = task_for(exp)
    train, test = task.load(prepared_dir, "train"), task.load(prepared_dir, "test")
    method = get_method(exp.method)
    steps = cfg.epochs * -(-len(train) // cfg.batch_size)
    state, spec = build_state(exp, cfg, task, train, device, steps)
    fingerprint = {"experiment": exp.to_dict(), "train": dataclasses.asdict(cfg), "n": len(train)}
    if distributed.world_size() > 1:
        fingerprint["processes"] = distributed.world_size()
        method = _distributed(state, method, cfg, device)
    _try_resume(state, resume_file, fingerprint)
    main = distributed.is_main()  # evaluates, logs and writes; every process trains
    with _live(live_dir) if main else contextlib.nullcontext() as live:
        for epoch, logged in enumerate(state.log, start=1):  # DVC wipes outputs before a re-run: log them again
            _log_epoch(live, epoch, logged)
        while state.epoch < cfg.epochs:
            method_cfg = exp.method_config
            if method.begin_epoch is not None:  # training phases, derived from the epoch index (resume-safe)
                method_cfg = method.begin_epoch(state.model, method_cfg, state.epoch, cfg.epochs, train, device)
                distributed.broadcast_module(state.model)  # the same model in every process (no-op for one)
            stats = train_one_epoch(state, method, method_cfg, train, task, cfg.batch_size, device,
                                    f"{exp.name} epoch {state.epoch + 1}/{cfg.epochs}")
            state.epoch += 1
            generators = distributed.all_gather(state.generator.get_state())  # for the resume state
            if not main:
                continue
            history = {"train_loss": stats["loss"], **evaluate(state.model, test, task, device)}
            state.log.append(history)
            _log_epoch(live, state.epoch, history)
            shown = " ".join(f"{k} {v:.4f}" for k, v in history.items())
            print(f"[train {exp.name}] epoch {state.epoch}/{cfg.epochs} {shown}", file=sys.stderr)
            if resume_file is not None:
                _save_resume(resume_file, fingerprint, state, generators)
    if main:
        save_checkpoint(out_dir / "model.pt", state.model.cpu(), spec,
                        {"experiment": exp.name, "config": exp.to_dict(), "train": dataclasses.asdict(cfg),
                         "classes": train.classes, "dataset": exp.dataset, "task": task.name})
    return {"experiment": exp.name, "epochs": cfg.epochs, **(state.log[-1] if state.log else {})}
