"""The shared evaluation suite: one honest set of attacks for every image model.

Runs, on a fixed seeded subset of the test split: clean accuracy; FGSM; PGD-k untargeted;
PGD-k random-targeted (reported as accuracy on the true label, as Zoran et al. and Xie et al.
report it, plus the target hit rate); an eps sweep (always extended with eps 0 and the
whole-box budget); a steps sweep; and the per-sample worst case over every attack whose budget
is within the headline eps. Sanity checks (:mod:`attnrobust.attacks.sanity`) run every time.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from attnrobust.attacks.budget import Domain, input_bounds, levels_to_input, whole_box_levels
from attnrobust.attacks.pgd import fgsm, pgd, random_targets
from attnrobust.attacks.sanity import run_sanity_checks


@dataclass(frozen=True)
class AttackConfig:
    eps: int  # headline budget in 8-bit levels (8 = 8/255)
    steps: int  # PGD steps at the headline budget
    step_factor: float = 2.5  # step size = step_factor * eps / steps (Madry et al.'s rule)
    restarts: int = 1  # random restarts of PGD (only still-robust points restart)
    n_samples: int = 500  # test samples attacked, drawn once with `seed`; 0 = the whole split
    batch_size: int = 256  # samples per attack batch
    eps_sweep: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])  # levels; 0 and whole box added
    steps_sweep: list[int] = field(default_factory=lambda: [1, 5, 10, 20])  # PGD steps at `eps`
    seed: int = 0  # seeds the subset, random starts and random targets
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = CUDA when present

    def __post_init__(self) -> None:
        if self.eps < 0 or any(e < 0 for e in self.eps_sweep):
            raise ValueError("eps must be >= 0 (8-bit levels)")
        if self.steps < 1 or any(s < 1 for s in self.steps_sweep) or self.restarts < 1:
            raise ValueError("steps, steps_sweep and restarts must be >= 1")
        if self.step_factor <= 0 or self.batch_size < 1 or self.n_samples < 0:
            raise ValueError("need step_factor > 0, batch_size >= 1, n_samples >= 0")


def select_subset(n_total: int, n_samples: int, seed: int) -> np.ndarray:
    """Indices of the attacked subset: a seeded permutation's first ``n_samples`` (sorted)."""
    if n_samples == 0 or n_samples >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).permutation(n_total)[:n_samples])


class _Runner:
    """Runs one attack over the subset in batches and returns per-sample correctness."""

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, cfg: AttackConfig, device, domain: Domain):
        self.model, self.x, self.y, self.cfg, self.device = model, x, y, cfg, device
        self.bounds = input_bounds(domain)
        self.domain = domain
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def batches(self, n: int):
        for start in range(0, n, self.cfg.batch_size):
            yield slice(start, start + self.cfg.batch_size)

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        return torch.cat([self.model(x[s].to(self.device)).argmax(1).cpu() for s in self.batches(len(x))])

    def pgd_predict(self, eps_levels: Tensor, steps: int, index: Tensor, targets: Tensor | None = None) -> Tensor:
        """Per-sample top-1 prediction under PGD; ``eps_levels``/``index``/``targets`` are aligned rows."""
        out = []
        for s in self.batches(len(index)):
            eps = (eps_levels[s] * levels_to_input(1, self.domain)).to(self.device)
            xb, yb = self.x[index[s]].to(self.device), self.y[index[s]].to(self.device)
            tb = None if targets is None else targets[s].to(self.device)
            x_adv = pgd(self.model, xb, yb, eps=eps, steps=steps, step_size=self.cfg.step_factor * eps / steps,
                        targets=tb, restarts=self.cfg.restarts, bounds=self.bounds, generator=self.generator)
            with torch.no_grad():
                out.append(self.model(x_adv).argmax(1).cpu())
        return torch.cat(out)

    def pgd_correct(self, eps_levels: Tensor, steps: int, index: Tensor) -> Tensor:
        return self.pgd_predict(eps_levels, steps, index) == self.y[index]

    def fgsm_correct(self) -> Tensor:
        eps = levels_to_input(self.cfg.eps, self.domain)
        out = []
        for s in self.batches(len(self.y)):
            xb, yb = self.x[s].to(self.device), self.y[s].to(self.device)
            x_adv = fgsm(self.model, xb, yb, eps=eps, bounds=self.bounds)
            with torch.no_grad():
                out.append((self.model(x_adv).argmax(1) == yb).cpu())
        return torch.cat(out)


def _acc(correct: Tensor) -> float:
    return float(correct.float().mean()) if len(correct) else float("nan")


def run_suite(model: nn.Module, x: Tensor, y: Tensor, cfg: AttackConfig, *, num_classes: int,
              device: torch.device, domain: Domain = Domain.IMAGE) -> tuple[dict, dict[str, np.ndarray]]:
    """Attack ``model`` on (x, y); returns (summary, per-sample columns). ``x`` is already the subset."""
    t0 = time.perf_counter()
    model = model.to(device).eval()
    run = _Runner(model, x, y, cfg, device, domain)
    n, everyone = len(y), torch.arange(len(y))
    at_eps = torch.full((n,), float(cfg.eps))
    cols: dict[str, Tensor] = {"label": y.clone(), "clean_correct": run.predict(x) == y}
    cols["fgsm_correct"] = run.fgsm_correct()
    cols["pgd_correct"] = run.pgd_correct(at_eps, cfg.steps, everyone)
    cols["target"] = random_targets(y, num_classes, run.generator)
    targeted_pred = run.pgd_predict(at_eps, cfg.steps, everyone, cols["target"])
    cols["pgd_targeted_correct"] = targeted_pred == y
    cols["target_hit"] = targeted_pred == cols["target"]
    eps_values = sorted(set(cfg.eps_sweep) | {0, cfg.eps, whole_box_levels(domain)})
    attacked = [e for e in eps_values if e > 0]  # all budgets in one stacked batch stream
    sweep_eps = torch.tensor(attacked, dtype=torch.float32).repeat_interleave(n)
    sweep = run.pgd_correct(sweep_eps, cfg.steps, everyone.repeat(len(attacked))).view(len(attacked), n)
    sweep = torch.cat([cols["clean_correct"][None], sweep])  # eps 0 is the clean input
    steps_values = sorted(set(cfg.steps_sweep) | {cfg.steps})
    by_steps = torch.stack([run.pgd_correct(at_eps, s, everyone) for s in steps_values])
    within = [cols["clean_correct"], cols["fgsm_correct"], cols["pgd_correct"], cols["pgd_targeted_correct"],
              *by_steps, *[sweep[i] for i, e in enumerate(eps_values) if e <= cfg.eps]]
    cols["worst_correct"] = torch.stack(within).all(0)
    curves = {"eps": eps_values, "eps_acc": [_acc(c) for c in sweep],
              "steps": steps_values, "steps_acc": [_acc(c) for c in by_steps]}
    checks = run_sanity_checks(model, x, y, cols, curves, cfg, num_classes=num_classes, device=device,
                               whole_box=whole_box_levels(domain))
    summary = {
        "n": n, "eps": cfg.eps, "steps": cfg.steps, "restarts": cfg.restarts,
        "clean_acc": _acc(cols["clean_correct"]), "fgsm_acc": _acc(cols["fgsm_correct"]),
        "pgd_acc": _acc(cols["pgd_correct"]), "pgd_targeted_acc": _acc(cols["pgd_targeted_correct"]),
        "targeted_success": _acc(cols["target_hit"]),
        "robust_acc": _acc(cols["worst_correct"]), "curves": curves, "sanity": checks,
        "unreliable": not all(c["passed"] for c in checks.values()),
        "runtime_s": round(time.perf_counter() - t0, 2),
    }
    print(f"[attack] n={n} clean {summary['clean_acc']:.3f} fgsm {summary['fgsm_acc']:.3f} "
          f"pgd {summary['pgd_acc']:.3f} pgd-T {summary['pgd_targeted_acc']:.3f} worst {summary['robust_acc']:.3f}"
          f"{' UNRELIABLE' if summary['unreliable'] else ''} ({summary['runtime_s']}s)", file=sys.stderr)
    return summary, {k: v.numpy().astype(np.int64) for k, v in cols.items()}
