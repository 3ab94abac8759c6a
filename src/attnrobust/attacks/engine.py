"""The evaluation engine: every gradient attack of every evaluation plan runs through :class:`Engine`.

A plan (the image suite and its threat model B, the video suite, the per-head attacks, the S3TA
race, the report's examples, the detector's attacks) says *what* to attack: which rows, at which
budgets, toward which targets, with which loss. The engine says *how*, the same way for all of them:

* **threat model** (:class:`ThreatModel`): the input domain (units and box), where the attacker
  may perturb, the loss the attack ascends and the success test at which a point stops;
* **eps** in 8-bit levels, one for every row or one per row (:func:`attnrobust.units.levels_to_input`
  converts, once); **steps** as the plan asks;
* **step size**: Madry et al.'s ``step_factor * eps / steps`` (``attack.step_factor``) unless the
  plan's attack defines its own in levels (the race's Xie et al. rule, the per-head attacks'
  official steps) or its own factor (FGSM: one step of eps);
* **random start** (``attack.random_start``): an attack defined with one (PGD) starts at a random
  point of the eps-ball only when it is true; FGSM, BIM and MIM are defined without one;
* **restarts** (``attack.restarts``, attacks with a random start only): with a success test, only
  the points still standing restart (:func:`~attnrobust.attacks.pgd.pgd`); without one (multi-label
  video has no per-sample success) every restart runs over every row and the plan's ``choose``
  keeps per sample the worst;
* **EOT** (``attack.eot_samples``): every gradient averages that many forward passes;
* **precision** (``attack.precision``): every forward pass of the attacked model, in the attacks
  and in the read-outs, runs under bf16 autocast when asked, with fp32 outputs;
* **nproc** (``attack.nproc``): each process attacks a contiguous share of the rows
  (:func:`attnrobust.distributed.shard`) and every process gets every row's read-out back, in order;
* eval mode and gradients w.r.t. the input only, in batches of ``attack.batch_size``; a threat
  model that leaves nothing perturbable (the mask-only floor) returns every input as it is.

AutoAttack (:mod:`attnrobust.attacks.autoattack`) is the reference the suite is checked against;
it runs its own attacks, on the same model, precision, EOT, shares and perturbation mask.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor, nn

from attnrobust import distributed
from attnrobust.attacks.pgd import LossFn, SuccessFn, mim, pgd
from attnrobust.runtime import progress, resolve_precision
from attnrobust.units import Domain, input_bounds, levels_to_input

Readout = Callable[[Tensor], Tensor]  # the attacked model's output on a batch -> what the plan keeps


def top1(outputs: Tensor) -> Tensor:
    """Read-out: the top-1 prediction (of every head, for stacked (B, H, C) outputs)."""
    return outputs.argmax(-1)


def fp32(outputs: Tensor) -> Tensor:
    """Read-out: the outputs themselves (logits), in fp32."""
    return outputs.float()


@dataclass(frozen=True)
class ThreatModel:
    """What the attacker may change and what counts as a success."""

    domain: Domain = Domain.IMAGE  # units of eps and the box the input stays in
    perturb_mask: Tensor | None = None  # 1 where the attacker may perturb; broadcastable to x (its rows or one)
    loss_fn: LossFn | None = None  # ascended, summed over the batch; None = cross-entropy (untargeted or targeted)
    success_fn: SuccessFn | None = None  # a point that meets it stops; None: misclassified / hits the target
    # with the default loss, no early stop with a custom one

    @property
    def bounds(self) -> tuple[float, float]:
        return input_bounds(self.domain)


class Autocast(nn.Module):
    """``model`` with every forward pass under autocast to ``dtype``, returning fp32 outputs; its
    parameters, mode and attributes stay the model's own (``Autocast(m).module is m``)."""

    def __init__(self, module: nn.Module, device_type: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.module, self.device_type, self.dtype = module, device_type, dtype
        self.train(module.training)

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(self.device_type, dtype=self.dtype):
            out = self.module(x)
        return out.float()


def with_precision(model: nn.Module, precision: str, device: torch.device) -> nn.Module:
    """``model`` itself for fp32, else wrapped in :class:`Autocast` (``attack.precision``)."""
    dtype = resolve_precision(precision, device)
    return model if dtype is None else Autocast(model, device.type, dtype)


class Engine:
    """One model under attack on one set of samples (x, y), with the attack params ``cfg``
    (:class:`~attnrobust.attacks.suite.AttackConfig`: batch_size, step_factor, random_start,
    restarts, eot_samples, precision, seed).

    ``generator`` seeds random starts (default: ``attack.seed``, its own per process); a plan
    whose attacks must share starts across calls passes one per call. ``shard=False``: the plan
    runs on one process alone, which attacks every row.
    """

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, cfg, *, device: torch.device | str,
                 threat: ThreatModel = ThreatModel(), generator: torch.Generator | None = None,
                 desc: str = "attack", shard: bool = True) -> None:
        device = torch.device(device)
        self.target = model.to(device).eval()  # the plan's model: attributes (glances, heads) live here
        self.model = with_precision(self.target, cfg.precision, device)
        self.x, self.y, self.cfg, self.device, self.threat, self.desc = x, y, cfg, device, threat, desc
        self.sharded = shard  # False: a plan that one process runs alone (the report's pictures)
        self.generator = generator or torch.Generator().manual_seed(distributed.rank_seed(cfg.seed))

    def batches(self, n: int) -> Iterator[slice]:
        for start in progress(range(0, n, self.cfg.batch_size), desc=self.desc, unit="batch"):
            yield slice(start, start + self.cfg.batch_size)

    @torch.no_grad()
    def read(self, x: Tensor | None = None, readout: Readout = fp32) -> Tensor:
        """``readout(model(x))`` of every row of ``x`` (default: the engine's samples) in batches,
        on the CPU. Every process reads every row (no shares: a forward pass is cheap)."""
        x = self.x if x is None else x
        if len(x) == 0:
            return readout(self.model(self.x[:1].to(self.device)))[:0].cpu()
        return torch.cat([readout(self.model(x[s].to(self.device))).cpu() for s in self.batches(len(x))])

    def attack(self, rows: Tensor | None = None, *, eps: float | Tensor, steps: int,
               step_size: float | Tensor | None = None, step_factor: float | None = None,
               targets: Tensor | None = None, random_start: bool = True, restarts: int | None = None,
               method: Literal["pgd", "mim"] = "pgd", threat: ThreatModel | None = None,
               readout: Readout | None = None, choose: Callable[[list[Tensor], Tensor], Tensor] | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        """Attack ``rows`` of the samples (default: all; a row may repeat, e.g. once per budget) and
        return, for every row in order, ``readout(model(x_adv))`` or, without a read-out, ``x_adv``
        (CPU). ``eps``/``step_size`` in levels, scalars or one per row of ``rows``; ``targets`` per row
        makes the attack targeted. ``random_start`` says whether the attack is defined with one.
        ``restarts`` (default ``attack.restarts``) overrides for an attack that must run once.
        Without a success test, several restarts each return their read-out and ``choose(runs, y)``
        picks per row (required then)."""
        threat = threat or self.threat
        rows = torch.arange(len(self.y)) if rows is None else rows
        start = random_start and self.cfg.random_start
        restarts = (self.cfg.restarts if restarts is None else restarts) if start else 1
        early_stop = threat.loss_fn is None or threat.success_fn is not None
        if restarts > 1 and not early_stop:  # no per-sample success: the plan chooses among whole runs
            if choose is None:
                raise ValueError("restarts of an attack without a success test need `choose`")
            runs = [self._run(rows, eps, steps, step_size, step_factor, targets, start, 1, method, threat,
                              readout, generator) for _ in range(restarts)]
            return choose(runs, self.y[rows])
        return self._run(rows, eps, steps, step_size, step_factor, targets, start, restarts, method, threat,
                         readout, generator)

    def _run(self, rows, eps, steps, step_size, step_factor, targets, random_start, restarts, method, threat,
             readout, generator) -> Tensor:
        """One attack over this process's share of ``rows``, in batches; every share gathered."""
        mine = distributed.shard(len(rows)) if self.sharded else slice(None)
        rows, eps, step_size, targets = (_share(v, mine) for v in (rows, eps, step_size, targets))
        mask = None if threat.perturb_mask is None else torch.broadcast_to(threat.perturb_mask, self.x.shape)
        fixed = mask is not None and not bool(threat.perturb_mask.any())  # nothing perturbable: x_adv = x
        unit = levels_to_input(1, threat.domain)
        out = []
        for s in self.batches(len(rows)):
            xb, yb = self.x[rows[s]].to(self.device), self.y[rows[s]].to(self.device)
            if fixed:  # the mask-only floor: every attack returns its input, without spending a gradient
                with torch.no_grad():
                    out.append((xb if readout is None else readout(self.model(xb))).cpu())
                continue
            e = _to_input(_rows(eps, s), threat.domain, unit, self.device)
            if step_size is not None:
                alpha = _to_input(_rows(step_size, s), threat.domain, unit, self.device)
            else:
                alpha = (self.cfg.step_factor if step_factor is None else step_factor) * e / steps
            kw = dict(eps=e, steps=steps, step_size=alpha, bounds=threat.bounds, loss_fn=threat.loss_fn,
                      success_fn=threat.success_fn, perturb_mask=None if mask is None else mask[rows[s]].to(self.device),
                      eot_samples=self.cfg.eot_samples)
            if method == "mim":
                if random_start or targets is not None:
                    raise ValueError("MIM is untargeted and starts at the clean point")
                x_adv = mim(self.model, xb, yb, **kw)
            else:
                x_adv = pgd(self.model, xb, yb, random_start=random_start, restarts=restarts,
                            targets=None if targets is None else targets[s].to(self.device),
                            generator=generator or self.generator, **kw)
            if readout is not None:
                with torch.no_grad():
                    x_adv = readout(self.model(x_adv))
            out.append(x_adv.cpu())
        if not out:  # this process's share is empty
            out = [self.x[:0] if readout is None else self.read(self.x[:0], readout)]
        return distributed.gather_rows(torch.cat(out)) if self.sharded else torch.cat(out)

    def with_threat(self, **changes) -> ThreatModel:
        """The engine's threat model with ``changes`` (e.g. another loss or perturbation mask)."""
        return replace(self.threat, **changes)


def _share(value, mine: slice):
    return value[mine] if isinstance(value, Tensor) and value.ndim > 0 else value


def _rows(value, s: slice):
    return value[s] if isinstance(value, Tensor) and value.ndim > 0 else value


def _to_input(levels, domain: Domain, unit: float, device) -> float | Tensor:
    """Levels to input units: a scalar in Python floats, per-row values as a tensor on ``device``."""
    if isinstance(levels, Tensor):
        return (levels * unit).to(device)
    return levels_to_input(levels, domain)
