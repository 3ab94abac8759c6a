"""FGSM, L-inf PGD (untargeted and targeted) and MIM, written for honest, fast evaluation.

Semantics follow Madry et al. and the random-targeted protocol of Xie et al. (spec/attacks.md,
spec/methods.md §0.1):

* the model is put in eval mode and gradients are taken w.r.t. the input only;
* untargeted PGD ascends ``loss_fn(model(x), y)``; targeted PGD descends ``loss_fn(model(x), target)``;
* each step is ``x <- clip(x ± step_size * sign(grad), [x0 - eps, x0 + eps] ∩ bounds)``;
* a sample that is already adversarial is frozen at that point and dropped from the batch
  ("compaction"), so later steps and restarts only pay for points still standing; the frozen
  point is a real adversarial example, so this never weakens the attack;
* restarts re-run only the points that survived, from a fresh random start;
* ``eot_samples > 1`` (randomised models, EOT): each step averages the gradient over that many
  forward passes, and there is no early stop: success is judged on one fresh pass after the
  run, never on a pass that made the gradient. Non-differentiable parts declared with
  :func:`attnrobust.attacks.adaptive.bpda` are differentiated through their approximation here
  and in every other gradient attack (see that module).
* :func:`mim`: the momentum iterative method (Dong et al.), as Nakka & Salzmann's evaluation runs it.

``eps`` and ``step_size`` may be per-sample tensors of shape (N,), which is how several budgets
are attacked in one batch (the eps sweep).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LossFn = Callable[[Tensor, Tensor], Tensor]
SuccessFn = Callable[[Tensor, Tensor], Tensor]


@contextlib.contextmanager
def eval_no_param_grad(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and ``requires_grad=False`` on every parameter; both restored on exit."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def misclassified(logits: Tensor, y: Tensor) -> Tensor:
    """Untargeted success: the top-1 prediction is not the label."""
    return logits.argmax(1) != y


def hits_target(logits: Tensor, target: Tensor) -> Tensor:
    """Targeted success: the top-1 prediction is the target."""
    return logits.argmax(1) == target


def random_targets(y: Tensor, num_classes: int, generator: torch.Generator | None = None) -> Tensor:
    """A target drawn uniformly among the wrong classes: ``(y + U{1..C-1}) mod C``."""
    offset = torch.randint(1, num_classes, y.shape, generator=generator).to(y.device)
    return (y + offset) % num_classes


def per_sample(value: float | Tensor, n: int, like: Tensor) -> Tensor:
    """Broadcast a scalar or (N,) budget to shape (N, 1, ..., 1) matching ``like``."""
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    t = t.expand(n) if t.ndim == 0 else t
    return t.view(n, *([1] * (like.ndim - 1)))


def project(x_adv: Tensor, x0: Tensor, eps: Tensor, bounds: tuple[float, float]) -> Tensor:
    return torch.clamp(torch.minimum(torch.maximum(x_adv, x0 - eps), x0 + eps), *bounds)


def _random_start(x0: Tensor, eps: Tensor, bounds, generator, perturb_mask) -> Tensor:
    noise = torch.rand(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device) * 2 - 1
    noise = noise * eps
    if perturb_mask is not None:
        noise = noise * perturb_mask
    return project(x0 + noise, x0, eps, bounds)


def _pgd_run(model, x0, y, eps, alpha, steps, bounds, loss_fn, success_fn, targeted,
             random_start, generator, perturb_mask, eot_samples=1) -> tuple[Tensor, Tensor]:
    """One PGD run over a batch; returns (x_adv, success). Successful points stop early
    (deterministic models only: under EOT one random pass may misclassify by luck)."""
    early_stop = success_fn is not None and eot_samples == 1
    x_adv = _random_start(x0, eps, bounds, generator, perturb_mask) if random_start else x0.clone()
    done = torch.zeros(len(x0), dtype=torch.bool, device=x0.device)
    active = torch.arange(len(x0), device=x0.device)
    sign = -1.0 if targeted else 1.0
    for _ in range(steps):
        xa = x_adv[active].requires_grad_(True)
        logits = model(xa)
        if early_stop:
            hit = success_fn(logits.detach(), y[active])
            done[active[hit]] = True
            keep = ~hit
            active, xa, logits = active[keep], xa, logits[keep]
            if active.numel() == 0:
                break
            loss = loss_fn(logits, y[active])
            grad = torch.autograd.grad(loss, xa)[0][keep]
        else:
            grad = torch.autograd.grad(loss_fn(logits, y[active]), xa)[0]
            for _ in range(eot_samples - 1):  # EOT: fresh random passes, gradients averaged
                grad += torch.autograd.grad(loss_fn(model(xa), y[active]), xa)[0]
            grad /= eot_samples
        step = sign * alpha[active] * grad.sign()
        if perturb_mask is not None:
            step = step * perturb_mask[active]
        x_adv[active] = project(x_adv[active] + step, x0[active], eps[active], bounds)
    if success_fn is not None and active.numel():
        with torch.no_grad():
            done[active] = success_fn(model(x_adv[active]), y[active])
    return x_adv.detach(), done


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float | Tensor,
    steps: int,
    step_size: float | Tensor,
    random_start: bool = True,
    targets: Tensor | None = None,
    restarts: int = 1,
    bounds: tuple[float, float] = (0.0, 1.0),
    loss_fn: LossFn | None = None,
    success_fn: SuccessFn | None = None,
    perturb_mask: Tensor | None = None,
    generator: torch.Generator | None = None,
    eot_samples: int = 1,
) -> Tensor:
    """L-inf PGD; returns adversarial inputs with ``|x_adv - x| <= eps`` and within ``bounds``.

    ``eps``/``step_size`` are in input units (``8/255``, not ``8``), scalars or per-sample (N,).
    With ``targets`` the attack is targeted. ``loss_fn`` defaults to summed cross-entropy (sum,
    so a sample's step does not depend on the batch size); ``success_fn`` defaults to
    misclassification (untargeted) or hitting the target (targeted) when ``loss_fn`` is the
    default, and to none (no early stop) for a custom loss. ``perturb_mask`` (broadcastable to
    ``x``) restricts the perturbation to where it is 1 (threat model B of the mask defence).
    ``eot_samples`` > 1 averages each step's gradient over that many passes (randomised models).
    """
    targeted = targets is not None
    labels = targets if targeted else y
    if loss_fn is None:
        loss_fn = lambda logits, t: F.cross_entropy(logits, t, reduction="sum")  # noqa: E731
        success_fn = success_fn or (hits_target if targeted else misclassified)
    x0 = x.detach()
    eps_t = per_sample(eps, len(x0), x0)
    alpha_t = per_sample(step_size, len(x0), x0)
    mask = None if perturb_mask is None else torch.broadcast_to(perturb_mask, x0.shape).to(x0)
    x_best = x0.clone()
    best = torch.full((len(x0),), -1, dtype=torch.long, device=x0.device)  # outcome of x_best, see below
    todo = torch.arange(len(x0), device=x0.device)
    with eval_no_param_grad(model), torch.enable_grad():
        for _ in range(max(restarts, 1)):
            x_adv, done = _pgd_run(
                model, x0[todo], labels[todo], eps_t[todo], alpha_t[todo], steps, bounds, loss_fn,
                success_fn, targeted, random_start, generator, None if mask is None else mask[todo], eot_samples)
            # per sample, a restart replaces the kept point only if it did better: 2 = success,
            # 1 = missed the target but misclassified (still broken for the defender), 0 = neither
            outcome = 2 * done.long()
            if targeted and restarts > 1:
                with torch.no_grad():
                    outcome += (~done & misclassified(model(x_adv), y[todo])).long()
            better = outcome > best[todo]
            x_best[todo[better]], best[todo[better]] = x_adv[better], outcome[better]
            todo = todo[~done]
            if todo.numel() == 0 or success_fn is None or not random_start:
                break
    return x_best


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float | Tensor,
    bounds: tuple[float, float] = (0.0, 1.0),
    loss_fn: LossFn | None = None,
    perturb_mask: Tensor | None = None,
    eot_samples: int = 1,
) -> Tensor:
    """Fast gradient sign method: one step of size ``eps`` from the clean input."""
    return pgd(model, x, y, eps=eps, steps=1, step_size=eps, random_start=False, bounds=bounds,
               loss_fn=loss_fn, perturb_mask=perturb_mask, eot_samples=eot_samples)


def mim(model: nn.Module, x: Tensor, y: Tensor, *, eps: float | Tensor, steps: int, step_size: float | Tensor,
        loss_fn: LossFn, success_fn: SuccessFn,
        bounds: tuple[float, float] = (0.0, 1.0), perturb_mask: Tensor | None = None,
        eot_samples: int = 1) -> Tensor:
    """Momentum iterative FGSM (Dong et al. 2018) as the official evaluation runs it; budgets in
    input units. ``g <- g + grad / mean|grad|`` (per sample), ``x <- x + step_size * sign(g)``,
    projected onto the eps-ball and ``bounds``; points already misclassified stop there.
    ``eot_samples`` > 1 averages each step's gradient over that many passes and stops no point
    early (one random pass may misclassify by luck), as :func:`pgd` does."""
    x0 = x.detach()
    eps_t, alpha = per_sample(eps, len(x0), x0), per_sample(step_size, len(x0), x0)
    mask = None if perturb_mask is None else torch.broadcast_to(perturb_mask, x0.shape).to(x0)
    x_adv, momentum = x0.clone(), torch.zeros_like(x0)
    active = torch.arange(len(x0), device=x0.device)
    with eval_no_param_grad(model), torch.enable_grad():
        for _ in range(steps):
            xa = x_adv[active].requires_grad_(True)
            logits = model(xa)
            if eot_samples == 1:
                keep = ~success_fn(logits.detach(), y[active])
                if not keep.any():
                    return x_adv.detach()
                grad = torch.autograd.grad(loss_fn(logits[keep], y[active][keep]), xa)[0][keep]
                active = active[keep]
            else:
                grad = torch.autograd.grad(loss_fn(logits, y[active]), xa)[0]
                for _ in range(eot_samples - 1):  # EOT: fresh random passes, gradients averaged
                    grad += torch.autograd.grad(loss_fn(model(xa), y[active]), xa)[0]
                grad /= eot_samples
            if mask is not None:
                grad = grad * mask[active]
            grad = grad / grad.abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, *([1] * (x0.ndim - 1)))
            momentum[active] += grad
            step = alpha[active] * momentum[active].sign()
            if mask is not None:
                step = step * mask[active]
            x_adv[active] = project(x_adv[active] + step, x0[active], eps_t[active], bounds)
    return x_adv.detach()
