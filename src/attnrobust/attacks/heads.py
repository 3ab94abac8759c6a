"""Every head of an image model under Nakka & Salzmann's attacks (spec/methods.md §3, official
``utils/adv_utils.py``): FGSM, BIM, PGD and MIM, 10 steps, at the budgets ``attack.head_eps``
(the paper's table: 2 and 8 levels), white-box and untargeted, each head attacked with its own loss.

* **heads**: a model with ``forward_heads(x)`` and a ``heads`` tuple (``protoattn``: ``fr``,
  ``a``) has each head attacked; any other model has one head, ``single``, its ``forward``. So
  the baselines are measured with the same attacks as the defence.
* **losses** (:data:`ATTACK_LOSSES`): the official evaluation attacks the FR head with
  CE(FR) + CE(A) and the A head with CE(A); here the FR head is also attacked with CE(FR) alone
  (on our GTSRB models it is the stronger of the two), and an attack's result is per sample the
  worse of its losses (``official_loss`` keeps the official loss's alone, comparable to the
  paper). Any other head: its own cross-entropy.
* **attacks**, ``eps`` and step ``alpha`` in 8-bit levels, ``n = head_steps``:
  ``fgsm``: random start in the eps-ball, one step of eps; ``bim``: no random start,
  ``alpha = eps / n``; ``pgd``: random start, ``alpha = max(1, eps / 4)`` (the official 1/255 at
  eps 2 and 2/255 at eps 8); ``mim``: no random start, ``alpha = eps / n``, each step's gradient
  divided by its mean absolute value per sample and summed with momentum 1 (Dong et al.).
  Every attack projects onto the eps-ball (the official BIM/MIM rely on ``n * alpha = eps``)
  and stops early on points it has already broken, as :func:`attnrobust.attacks.pgd.pgd` does.
  The suite's ``attack.restarts`` restart FGSM and PGD (the attacks with a random start) on the
  points still standing, and ``attack.eot_samples`` averages every attack's gradients (then no
  point stops early), as in every other plan.

Per head: ``clean_acc``, ``<attack>_acc_eps<e>``, and ``worst_acc_eps<e>`` (per sample, robust
under every attack with budget <= e). The head that ``forward`` returns (the primary head) and
the shared suite attack the same output, so they are folded both ways: its attacks within
``attack.eps`` join the suite's per-sample worst case (``robust_acc``), and for e >= ``attack.eps``
its ``worst_acc_eps<e>`` also counts every suite attack. Every other head gets the whole shared
suite too (:func:`~attnrobust.attacks.suite.run_suite` on that head's logits: PGD, targeted PGD,
the sweeps, AutoAttack), folded into its ``worst_acc_eps<e>`` for e >= ``attack.eps`` the same
way, so every head faces the attacks its single-head baselines face; its results are
``heads[<head>]["suite"]`` and its sanity checks ``heads_<head>_<check>``.

For models with ``latent_distances(x, y)`` (``protoattn``) the summary also gets ``latent``, the
class separation of the latent space, on clean inputs and on BIM examples at the largest budget
against the primary head (:func:`latent_separation`).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnrobust import distributed
from attnrobust.units import Domain
from attnrobust.attacks.engine import Engine, ThreatModel, top1
from attnrobust.attacks.pgd import eval_no_param_grad, misclassified
from attnrobust.attacks.sanity import check, monotone, gradient_norms, tolerance
from attnrobust.attacks.suite import per_sample_worst, run_suite

SINGLE = "single"  # the one head of a model without ``forward_heads``
# head -> the losses its attacks ascend, each the heads whose cross-entropies are summed (the official one first)
ATTACK_LOSSES = {"fr": (("fr", "a"), ("fr",)), "a": (("a",),)}
ATTACKS = ("fgsm", "bim", "pgd", "mim")


def model_heads(model: nn.Module) -> tuple[str, ...]:
    return tuple(model.heads) if hasattr(model, "forward_heads") else (SINGLE,)


def primary_head(model: nn.Module) -> str:
    """The head ``forward`` returns: the one the shared suite attacks."""
    return getattr(model, "head", SINGLE) if hasattr(model, "forward_heads") else SINGLE


class HeadsView(nn.Module):
    """The logits of every head of ``model`` stacked, (B, H, C), so the shared attacks can aim a
    loss and a success test at any head."""

    def __init__(self, model: nn.Module, heads: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.heads = model, heads
        self.train(model.training)  # attacks restore the view's mode, and with it the model's

    def forward(self, x: Tensor) -> Tensor:
        if self.heads == (SINGLE,):
            return self.model(x)[:, None]  # (B, 1, C)
        out = self.model.forward_heads(x)
        return torch.stack([getattr(out, h) for h in self.heads], 1)  # (B, H, C)


class OneHead(nn.Module):
    """One head's logits (B, C) of a :class:`HeadsView`, as a model the shared suite can attack."""

    def __init__(self, view: HeadsView, head: str) -> None:
        super().__init__()
        self.view, self.index = view, view.heads.index(head)
        self.train(view.training)

    def forward(self, x: Tensor) -> Tensor:
        return self.view(x)[:, self.index]


def attack_losses(heads: tuple[str, ...], head: str) -> list[tuple[str, ...]]:
    """The losses ``head`` is attacked with, each a tuple of the model's heads whose CEs are summed."""
    return [tuple(h for h in loss if h in heads) for loss in ATTACK_LOSSES.get(head, ((head,),))]


def head_loss(heads: tuple[str, ...], loss: tuple[str, ...]) -> Callable[[Tensor, Tensor], Tensor]:
    """The summed (over the batch) cross-entropies of the heads in ``loss``, on :class:`HeadsView` logits."""
    index = [heads.index(h) for h in loss]

    def loss(logits: Tensor, y: Tensor) -> Tensor:
        return sum(F.cross_entropy(logits[:, i], y, reduction="sum") for i in index)
    return loss


def head_misclassified(heads: tuple[str, ...], head: str) -> Callable[[Tensor, Tensor], Tensor]:
    i = heads.index(head)
    return lambda logits, y: misclassified(logits[:, i], y)


def loss_text(loss: tuple[str, ...]) -> str:
    return " + ".join(f"CE({h})" for h in loss)


# attack -> (steps: "n" = head_steps, step factor of eps / steps or a step in levels, random start, method);
# the official evaluation's settings (module docstring)
_OFFICIAL = {"fgsm": (1, {"step_factor": 1.0}, True, "pgd"), "bim": ("n", {"step_factor": 1.0}, False, "pgd"),
             "pgd": ("n", None, True, "pgd"), "mim": ("n", {"step_factor": 1.0}, False, "mim")}


def _attack(engine: Engine, name: str, rows: Tensor, eps_levels: int, threat: ThreatModel,
            keep_examples: bool) -> tuple[Tensor, Tensor | None]:
    """Attack ``name`` on ``rows`` at ``eps_levels`` with the official evaluation's steps and step
    sizes: ((n, H) top-1 of every head, the examples too with ``keep_examples``)."""
    steps, step, random_start, method = _OFFICIAL[name]
    steps = engine.cfg.head_steps if steps == "n" else steps
    step = step or {"step_size": max(1.0, eps_levels / 4)}  # PGD: the official 1/255 at eps 2, 2/255 at eps 8
    kw = dict(eps=eps_levels, steps=steps, random_start=random_start, method=method, threat=threat, **step)
    if not keep_examples:
        return engine.attack(rows, readout=top1, **kw), None
    x_adv = engine.attack(rows, **kw)
    return engine.read(x_adv, top1), x_adv


def latent_distances(model: nn.Module, x: Tensor, y: Tensor, batch_size: int, device) -> tuple[Tensor, Tensor]:
    """Per sample (every process's rows, gathered): the own-class and other-class distances of
    :func:`latent_separation`."""
    model.eval()
    with torch.no_grad():
        pairs = [model.latent_distances(x[s:s + batch_size].to(device), y[s:s + batch_size].to(device))
                 for s in range(0, len(y), batch_size)]
    return (distributed.gather_rows(torch.cat([p[0] for p in pairs]).cpu()),
            distributed.gather_rows(torch.cat([p[1] for p in pairs]).cpu()))


def latent_separation(model: nn.Module, x: Tensor, y: Tensor, batch_size: int, device) -> dict[str, float]:
    """Class separation of the latent space: ``own`` = mean over samples of the squared distance
    from the sample's most attended latent patch to the nearest prototype of its class, ``other``
    = the same to the nearest prototype of any other class (``model.latent_distances``), and
    ``ratio = other / own``. Separation pushes ``ratio`` up; latent patches lie in [0, 1]^D, so
    ``own`` and ``other`` compare across models of the same ``proto_dim``. With several processes
    (x, y) is this process's share and the means are over every process's."""
    own, other = (float(d.mean()) for d in latent_distances(model, x, y, batch_size, device))
    return {"own": own, "other": other, "ratio": other / max(own, 1e-12)}


def _attack_head(engine: Engine, head: str) -> tuple[dict, dict[str, Tensor], dict[int, Tensor]]:
    """One head under every attack, budget and loss: (scores, per-sample columns, BIM examples of
    the official loss per eps, every row). An attack's column is per sample the worse of its
    losses: each further loss attacks only the samples the earlier ones left standing."""
    view, y, cfg = engine.target, engine.y, engine.cfg
    i, heads = view.heads.index(head), view.heads
    losses = attack_losses(heads, head)
    within = [engine.read(readout=top1)[:, i] == y]
    scores, cols, bim = {"loss": "; ".join(map(loss_text, losses)), "clean_acc": _acc(within[0])}, {}, {}
    official = {"loss": loss_text(losses[0])}  # the official evaluation's loss alone, as the paper reports
    for eps in sorted(set(cfg.head_eps)):
        for name in ATTACKS:
            correct = torch.ones(len(y), dtype=torch.bool)
            for loss in losses:
                rows = correct.nonzero().flatten()
                threat = engine.with_threat(loss_fn=head_loss(heads, loss), success_fn=head_misclassified(heads, head))
                keep = name == "bim" and loss == losses[0]
                pred, x_adv = _attack(engine, name, rows, eps, threat, keep_examples=keep)
                correct[rows] = pred[:, i] == y[rows]
                if loss == losses[0]:
                    official[f"{name}_acc_eps{eps}"] = _acc(correct)
                    bim.update({eps: x_adv} if keep else {})
            within.append(correct)
            cols[f"{head}_{name}_eps{eps}_correct"] = correct
            scores[f"{name}_acc_eps{eps}"] = _acc(correct)
        cols[f"{head}_worst_eps{eps}_correct"] = per_sample_worst(within)  # budgets up to eps, clean included
        scores[f"worst_acc_eps{eps}"] = _acc(cols[f"{head}_worst_eps{eps}_correct"])
    if len(losses) > 1:
        scores["official_loss"] = official
    return scores, cols, bim


def run_head_attacks(model: nn.Module, x: Tensor, y: Tensor, cfg, full: dict, full_columns: dict, *,
                     device, domain: Domain = Domain.IMAGE,
                     perturb_mask: Tensor | None = None) -> tuple[dict, dict]:
    """The per-head attacks on (x, y) at ``cfg.head_eps`` (``cfg`` is the
    :class:`~attnrobust.attacks.suite.AttackConfig`); ``full``/``full_columns`` are the suite's
    results, returned extended with ``heads``, ``head_attacks``, ``latent`` (models that have it),
    the per-sample columns ``<head>_<attack>_eps<e>_correct``, the primary head's attacks within
    ``attack.eps`` folded into ``worst_correct``/``robust_acc``, and the checks ``heads_*``."""
    if not cfg.head_eps:
        return full, full_columns
    t0 = time.perf_counter()
    model = model.to(device).eval()
    view, primary = HeadsView(model, model_heads(model)), primary_head(model)
    engine = Engine(view, x, y, cfg, device=device, threat=ThreatModel(domain, perturb_mask), desc="heads")
    results, cols, x_bim = {}, {}, None
    for head in view.heads:
        results[head], head_cols, bim = _attack_head(engine, head)
        cols.update(head_cols)
        if head == primary:
            x_bim = bim[max(bim)]
    eps_values = sorted(set(cfg.head_eps))
    summary = {**full, "heads": results, "head_attacks": {
        "eps": eps_values, "steps": cfg.head_steps, "primary": primary,
        "step_size": "fgsm eps (random start); bim, mim eps/steps; pgd max(1, eps/4) levels (random start)"}}
    suite_worst = {primary: torch.from_numpy(full_columns["worst_correct"]).bool()}  # every suite attack within eps
    suite_checks = {}
    for head in (h for h in view.heads if h != primary):  # the same suite on every other head's own logits
        head_summary, head_cols = run_suite(OneHead(view, head), x, y, cfg, num_classes=_num_classes(model, x, device),
                                            device=device, domain=domain, perturb_mask=perturb_mask)
        suite_worst[head] = torch.from_numpy(head_cols["worst_correct"]).bool()
        cols[f"{head}_suite_worst_correct"] = suite_worst[head]
        results[head]["suite"] = {k: head_summary[k] for k in ("clean_acc", "pgd_acc", "pgd_targeted_acc",
                                                               "pgd_suite_acc", "robust_acc") if k in head_summary}
        suite_checks |= {f"heads_{head}_{k}": c for k, c in head_summary["sanity"].items()}
    for head, worst in suite_worst.items():
        for e in (e for e in eps_values if e >= full["eps"]):  # budget e allows them all: the head's worst
            key = f"{head}_worst_eps{e}_correct"
            cols[key] = per_sample_worst([cols[key], worst])
            results[head][f"worst_acc_eps{e}"] = _acc(cols[key])
    suite_worst = suite_worst[primary]
    folded = [cols[f"{primary}_{a}_eps{e}_correct"] for e in eps_values if e <= full["eps"] for a in ATTACKS]
    cols["worst_correct"] = per_sample_worst([suite_worst, *folded])
    summary["robust_acc"] = _acc(cols["worst_correct"])
    if hasattr(model, "latent_distances"):  # the latent space on clean inputs and under the strongest BIM
        mine = distributed.shard(len(y))
        own, other = latent_distances(model, x[mine], y[mine], cfg.batch_size, device)  # per sample: the claims' test
        cols["latent_own"], cols["latent_other"] = own.double(), other.double()
        summary["latent"] = {"clean": latent_separation(model, x[mine], y[mine], cfg.batch_size, device),
                             f"bim_eps{eps_values[-1]}": latent_separation(model, x_bim[mine], y[mine], cfg.batch_size,
                                                                           device)}
    summary["sanity"] = {**full["sanity"], **_head_checks(view, results, eps_values, x, y, cfg, device),
                         **suite_checks}
    summary["unreliable"] = not all(c["passed"] for c in summary["sanity"].values())
    shown = "; ".join(f"{h}: " + " ".join(f"{a} {s[f'{a}_acc_eps{e}']:.3f}@{e}" for e in eps_values
                                          for a in ("bim", "mim")) for h, s in results.items())
    print(f"[attack] heads ({shown}); worst with heads folded in {summary['robust_acc']:.3f} "
          f"({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
    return summary, {**full_columns, **{k: v.numpy() if v.is_floating_point() else v.numpy().astype("int64")
                                        for k, v in cols.items()}}


def _num_classes(model: nn.Module, x: Tensor, device) -> int:
    """Classes of ``model``'s output (its logits' width)."""
    with torch.no_grad():
        return int(model(x[:1].to(device)).shape[1])


def _head_checks(view: HeadsView, results: dict, eps_values: list[int], x: Tensor, y: Tensor, cfg,
                 device) -> dict[str, dict]:
    """Every head's attacks are non-increasing in eps, and no head has an all-zero input gradient."""
    tol, heads = tolerance(len(y)), view.heads
    curves = {f"{h}/{a}": [results[h][f"{a}_acc_eps{e}"] for e in eps_values] for h in heads for a in ATTACKS}
    with eval_no_param_grad(view), torch.enable_grad():
        zero = {f"{h}: {loss_text(loss)}": int((gradient_norms(view, x, y, device, cfg.batch_size,
                                                               loss_fn=head_loss(heads, loss)) == 0).sum())
                for h in heads for loss in attack_losses(heads, h)}
    return {
        "heads_eps_monotone": check(all(monotone(c, tol) for c in curves.values()), curves,
                                     f"every head's accuracy under each attack non-increasing in eps (tol {tol:.3f})"),
        "heads_nonzero_gradients": check(not any(zero.values()), zero,
                                          "no sample has an all-zero input gradient of any head's attack losses"),
    }


def _acc(correct: Tensor) -> float:
    return float(correct.float().mean()) if len(correct) else float("nan")
