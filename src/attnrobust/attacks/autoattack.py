"""AutoAttack-standard (Croce & Hein, 2020) with per-sample results, over pyautoattack's attacks.

Runs APGD-CE, APGD-T (targeted DLR), FAB-T and Square, in that order and with AutoAttack's
``standard`` L-inf settings (100 iterations and one restart each; targets are the top-k wrong
classes of the clean logits, k = min(9, C - 1)). Each attack runs only on the points that every
earlier one left standing, as ``AutoAttack.run_standard_evaluation`` does. The attack classes
are pyautoattack 0.2.0's, which match fra31/auto-attack a392200 apart from whitespace and
imports (spec/attacks.md §0).

Why this adapter and not ``pyautoattack.AutoAttack``: that class keeps its per-sample flags only
in its resume file (whose resume is broken, spec §5); it fixes ``n_target_classes`` at 9, which
fails with fewer than 10 classes (auto-attack #110); it fixes Square at 5000 queries; and every
attack reseeds torch's global RNG, which here is confined to the adapter (``fork_rng``).

Columns are cumulative, as AutoAttack logs them: ``fab_t_correct[i]`` is 1 when sample ``i`` is
still classified correctly after APGD-CE, APGD-T and FAB-T. Attack ``k`` broke sample ``i`` when
column ``k - 1`` is 1 and column ``k`` is 0. ``autoattack_correct`` is the last column.

AutoAttack is a single-label classification attack on images (N, C, H, W) in [0, 1]:
:func:`skip_reason` says why it does not apply, e.g. to multi-label video features.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import torch
from pyautoattack import __version__ as PYAUTOATTACK_VERSION
from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
from pyautoattack.fab_pt import FABAttack_PT
from pyautoattack.square import SquareAttack
from torch import Tensor, nn

from attnrobust.attacks.pgd import eval_no_param_grad

ATTACKS = ("apgd_ce", "apgd_t", "fab_t", "square")  # AutoAttack-standard, in its order
N_ITER = 100  # APGD and FAB iterations in AutoAttack-standard
MAX_TARGETS = 9  # target classes of APGD-T and FAB-T in AutoAttack-standard
SQUARE_QUERIES = 5000  # AutoAttack-standard's Square budget; attack.aa_square_queries may lower it
MULTILABEL = "skipped: multi-label task"
_LOG = logging.getLogger(__name__)  # pyautoattack's APGD warns here about zero gradients


NOTHING_PERTURBABLE = "skipped: the attacker may change nothing of this input (e.g. the mask-only floor)"


def skip_reason(x: Tensor, y: Tensor, *, num_classes: int, eps: float,
                perturb_mask: Tensor | None = None) -> str | None:
    """Why AutoAttack cannot evaluate this input, as the summary's ``autoattack`` entry; None if it can."""
    if y.ndim != 1:
        return MULTILABEL
    if x.ndim != 4:
        return f"skipped: inputs of shape {tuple(x.shape[1:])} are not images (C, H, W)"
    if num_classes < 2:
        return "skipped: fewer than 2 classes"
    if perturb_mask is not None:
        free = torch.broadcast_to(perturb_mask, x.shape).bool()
        if not free.any():
            return NOTHING_PERTURBABLE
        per_channel = free[:1, :, :1, :1]
        if not torch.equal(free, per_channel.expand_as(free)):
            return "skipped: the attacker may change only part of a channel, which AutoAttack cannot honour"
        fixed = x[~free]
        if eps >= 0.5 or not ((fixed == 0) | (fixed == 1)).all():
            return "skipped: channels the attacker may not change are not binary (or eps >= 0.5)"
    return None


class _RestoreFixedChannels(nn.Module):
    """The model behind rounding of the binary channels (input masks) the attacker may not change.

    AutoAttack perturbs every input value; a fixed channel in {0, 1} moved by at most eps < 0.5
    rounds back to itself, so the model always sees the original mask.
    """

    def __init__(self, model: nn.Module, free: Tensor) -> None:
        super().__init__()
        self.model, self.free = model, free  # free: (1, C, 1, 1) bool

    def forward(self, x: Tensor) -> Tensor:
        return self.model(torch.where(self.free.to(x.device), x, x.round()))


def standard_attacks(model: nn.Module, *, eps: float, num_classes: int, seed: int, device: torch.device,
                     square_queries: int = SQUARE_QUERIES, eot_samples: int = 1) -> tuple[dict, dict[str, str]]:
    """AutoAttack-standard's L-inf attacks (pyautoattack ``AutoAttack._set_version('standard')``).

    Returns ``({name: attack with .perturb(x, y)}, {name: why skipped})``. ``eot_samples`` is
    APGD's ``eot_iter`` (AutoAttack's ``rand`` version uses 20 for randomised models).
    """
    n_targets = min(MAX_TARGETS, num_classes - 1)  # auto-attack #110: at most C - 1 targets
    common = {"eps": eps, "norm": "Linf", "seed": seed, "device": device}
    attacks = {
        "apgd_ce": APGDAttack(model, n_iter=N_ITER, n_restarts=1, loss="ce", eot_iter=eot_samples, rho=0.75,
                              logger=_LOG, **common),
        "apgd_t": APGDAttack_targeted(model, n_iter=N_ITER, n_restarts=1, n_target_classes=n_targets,
                                      eot_iter=eot_samples, rho=0.75, logger=_LOG, **common),
        "fab_t": FABAttack_PT(model, n_iter=N_ITER, n_restarts=1, targeted=True, n_target_classes=n_targets,
                              **common),
        "square": SquareAttack(model, n_queries=square_queries, p_init=0.8, n_restarts=1, resc_schedule=False,
                               **common),
    }
    skipped = {}
    if num_classes < 4:  # the targeted DLR loss reads the 4th-largest logit
        skipped["apgd_t"] = "targeted DLR loss needs >= 4 classes"
        del attacks["apgd_t"]
    return attacks, skipped


@contextlib.contextmanager
def _own_rng(device: torch.device) -> Iterator[None]:
    """pyautoattack calls ``torch.manual_seed`` in every ``perturb``; keep that from the caller's RNG."""
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        yield


def _attack_survivors(attack, model: nn.Module, x: Tensor, y: Tensor, robust: Tensor, *, eps: float,
                      batch_size: int, device: torch.device) -> tuple[Tensor, int]:
    """Runs ``attack`` on the points still ``robust``; returns the new flags and how many
    returned points were rejected for leaving the eps-ball or the [0, 1] box."""
    robust, rejected = robust.clone(), 0
    index = robust.nonzero().flatten()
    for start in range(0, len(index), batch_size):
        rows = index[start:start + batch_size]
        xb, yb = x[rows].to(device), y[rows].to(device)
        x_adv = attack.perturb(xb, yb)
        in_box = ((x_adv >= 0) & (x_adv <= 1)).flatten(1).all(1)
        valid = in_box & ((x_adv - xb).abs().flatten(1).amax(1) <= eps + 1e-5)  # AA's own final check
        fooled = model(x_adv).argmax(1) != yb  # a fresh pass: the attack's own verdict is not trusted
        rejected += int((fooled & ~valid).sum())
        robust[rows[(fooled & valid).cpu()]] = False
    return robust, rejected


def run_autoattack(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, num_classes: int, device,
                   batch_size: int = 250, seed: int = 0, square_queries: int = SQUARE_QUERIES,
                   eot_samples: int = 1, perturb_mask: Tensor | None = None,
                   start: Tensor | None = None,
                   attacks: tuple[str, ...] = ATTACKS) -> tuple[dict, dict[str, Tensor]]:
    """AutoAttack-standard on images ``x`` (N, C, H, W) in [0, 1] with labels ``y`` (N,).

    ``eps`` is in input units (8/255). ``perturb_mask`` (broadcastable to ``x``) may fix whole
    binary channels (an input mask); :func:`skip_reason` must be None. ``start`` (N,) bool, if
    given, are the points still standing before AutoAttack (e.g. after other attacks): only those
    are attacked, the way each AutoAttack attack only attacks the points its predecessors left.
    ``attacks`` picks a subsequence of :data:`ATTACKS` (always run in AutoAttack's order).
    Returns (summary, columns): cumulative (N,) bool columns ``<attack>_correct`` for the attacks
    run and ``autoattack_correct``; ``clean`` in ``acc_after`` is the share standing at the start.
    """
    unknown = sorted(set(attacks) - set(ATTACKS))
    if unknown or not attacks:
        raise ValueError(f"AutoAttack attacks {unknown or '[]'}: choose a non-empty subset of {list(ATTACKS)}")
    chosen = tuple(a for a in ATTACKS if a in attacks)
    reason = skip_reason(x, y, num_classes=num_classes, eps=eps, perturb_mask=perturb_mask)
    if reason is not None:
        raise ValueError(f"AutoAttack does not apply: {reason}")
    t0, device = time.perf_counter(), torch.device(device)
    if perturb_mask is not None:
        model = _RestoreFixedChannels(model, torch.broadcast_to(perturb_mask, x.shape)[:1, :, :1, :1].bool())
    runnable, skipped = standard_attacks(model, eps=eps, num_classes=num_classes, seed=seed, device=device,
                                        square_queries=square_queries, eot_samples=eot_samples)
    cols: dict[str, Tensor] = {}
    acc_after, runtime, broken, rejected = {}, {}, {}, 0
    with eval_no_param_grad(model), torch.no_grad(), _own_rng(device):
        robust = torch.cat([torch.zeros(0, dtype=torch.long),  # an empty share of several processes
                            *(model(x[s:s + batch_size].to(device)).argmax(1).cpu()
                              for s in range(0, len(y), batch_size))]) == y
        if start is not None:
            robust &= start.bool()
        acc_after["clean"] = float(robust.float().mean())
        for name in chosen:
            t_attack, before = time.perf_counter(), robust
            if name in runnable:
                robust, n_rejected = _attack_survivors(runnable[name], model, x, y, robust, eps=eps,
                                                       batch_size=batch_size, device=device)
                rejected += n_rejected
            cols[f"{name}_correct"] = robust
            acc_after[name] = float(robust.float().mean())
            broken[name] = int((before & ~robust).sum())
            runtime[name] = round(time.perf_counter() - t_attack, 2)
    cols["autoattack_correct"] = robust
    runtime["total"] = round(time.perf_counter() - t0, 2)
    summary = {
        "status": "ran", "version": "standard" if chosen == ATTACKS else "+".join(chosen),
        "library": f"pyautoattack {PYAUTOATTACK_VERSION}", "n": len(y),
        "acc": acc_after[chosen[-1]], "acc_after": acc_after, "broken_by": broken,
        "n_target_classes": min(MAX_TARGETS, num_classes - 1), "square_queries": square_queries,
        "eot_iter": eot_samples, "skipped_attacks": skipped, "rejected_outside_budget": rejected,
    }
    _LOG.info("AutoAttack seconds per attack: %s", runtime)  # logs only: outputs stay byte-identical
    return summary, cols


def combine_shares(parts: list[dict]) -> dict:
    """One summary for AutoAttack run by several processes, each on its share of the samples
    (:func:`run_autoattack`'s summaries in rank order): counts add up, accuracies are over all
    samples."""
    ran = [p for p in parts if p["n"]]
    if not ran:
        return parts[0]
    n = sum(p["n"] for p in ran)
    first = ran[0]
    acc_after = {k: sum(round(p["acc_after"][k] * p["n"]) for p in ran) / n for k in first["acc_after"]}
    last = list(first["acc_after"])[-1]  # the last attack run: the cumulative accuracy
    return {**first, "n": n, "acc": acc_after[last], "acc_after": acc_after,
            "broken_by": {k: sum(p["broken_by"][k] for p in ran) for k in first["broken_by"]},
            "rejected_outside_budget": sum(p["rejected_outside_budget"] for p in ran),
            "processes": len(parts)}
