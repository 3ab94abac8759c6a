"""The student: a small CNN distilled from the frozen teacher (Hinton et al.'s knowledge distillation).

Feng & Cai pair image quality with knowledge distillation: a student that mimics the teacher on
natural images disagrees with it where the teacher's decision rests on something the student
did not learn, which is what adversarial perturbations crafted on the teacher and heavy
degradations do. The student is distilled on clean training images only, so that disagreement
stays a signal; the teacher is only ever run in eval mode and never changes.
"""
from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from attnrobust.checkpoint import model_spec
from attnrobust.detect.config import StudentConfig
from attnrobust.models import build_model
from attnrobust.runtime import show_progress


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """``T^2 * KL(softmax(z_t / T) || softmax(z_s / T))``, averaged over the batch (the T^2 keeps
    gradient magnitudes comparable across temperatures)."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
    return temperature ** 2 * kl


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, device, batch_size: int = 256) -> Tensor:
    """Logits of ``model`` in eval mode for every row of ``x``, on the CPU."""
    model.eval()
    return torch.cat([model(x[s:s + batch_size].to(device)).float().cpu() for s in range(0, len(x), batch_size)])


def agreement(teacher: nn.Module, student: nn.Module, x: Tensor, device) -> float:
    """Share of ``x`` on which the student's top-1 class is the teacher's."""
    if len(x) == 0:
        return float("nan")
    return float((predict(teacher, x, device).argmax(1) == predict(student, x, device).argmax(1)).float().mean())


def distill_student(teacher: nn.Module, x: Tensor, cfg: StudentConfig, *, teacher_kwargs: dict,
                    generator: torch.Generator, device, desc: str = "distill") -> tuple[nn.Module, dict]:
    """Distil a ``cnn`` of width ``cfg.width`` from ``teacher`` on images ``x`` (N, 3, H, W) in [0, 1].

    ``teacher_kwargs`` are the teacher's constructor arguments; the student shares its class count
    and input normalisation. Returns (the student in eval mode on the CPU, its model spec).
    """
    spec = model_spec("cnn", {"num_classes": teacher_kwargs["num_classes"], "mean": teacher_kwargs["mean"],
                              "std": teacher_kwargs["std"], "width": cfg.width})
    student = build_model(spec["name"], **spec["kwargs"]).to(device)
    targets = predict(teacher, x, device)  # the teacher is frozen: its logits are computed once
    steps = max(cfg.epochs * -(-len(x) // cfg.batch_size), 8)  # OneCycleLR divides by zero below ~5 steps
    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=steps, pct_start=0.25)
    for epoch in range(cfg.epochs):
        student.train()
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in tqdm(range(0, len(x), cfg.batch_size), desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}",
                          disable=not show_progress(), leave=False):
            idx = order[start:start + cfg.batch_size]
            xb = x[idx].to(device)
            loss = kd_loss(student(xb), targets[idx].to(device), cfg.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(xb)
        print(f"[{desc}] epoch {epoch + 1}/{cfg.epochs} kd_loss {total / max(len(x), 1):.4f}", file=sys.stderr)
    return student.cpu().eval(), spec
