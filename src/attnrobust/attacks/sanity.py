"""Gradient-masking sanity checks (Carlini et al. 2019; AutoAttack's run-time flags).

Each check returns ``{"passed": bool, "value": ..., "rule": str}``; a result that fails any of
them is marked ``unreliable``. Tolerances: ``tol = max(1 pp, 2 samples)``, so a handful of
random-start flips on a small subset does not raise a false alarm.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _check(passed: bool, value, rule: str) -> dict:
    return {"passed": bool(passed), "value": value, "rule": rule}


def _monotone(values: list[float], tol: float) -> bool:
    return all(b <= a + tol for a, b in zip(values, values[1:]))


def gradient_norms(model: nn.Module, x: Tensor, y: Tensor, device, batch_size: int) -> Tensor:
    """L1 norm of the cross-entropy input gradient per sample, at the clean point."""
    norms = []
    for start in range(0, len(y), batch_size):
        xb = x[start:start + batch_size].to(device).requires_grad_(True)
        loss = F.cross_entropy(model(xb), y[start:start + batch_size].to(device), reduction="sum")
        norms.append(torch.autograd.grad(loss, xb)[0].abs().flatten(1).sum(1).cpu())
    return torch.cat(norms)


def output_checks(model: nn.Module, x: Tensor, device) -> dict[str, dict]:
    """Deterministic logits over two passes, and outputs that are logits, not probabilities."""
    with torch.no_grad():
        xb = x[:64].to(device)
        a, b = model(xb), model(xb)
    rows_sum_to_one = torch.allclose(a.sum(1), torch.ones(len(a), device=a.device), atol=1e-4)
    probs_like = bool((a >= 0).all() and (a <= 1).all() and rows_sum_to_one)
    return {
        "deterministic": _check(torch.allclose(a, b, atol=1e-4), float((a - b).abs().max()),
                                "two clean forward passes give the same logits (atol 1e-4)"),
        "outputs_are_logits": _check(not probs_like, probs_like, "outputs are not already softmax probabilities"),
    }


def run_sanity_checks(model, x, y, cols: dict[str, Tensor], curves: dict, cfg, *, num_classes: int, device,
                      whole_box: int) -> dict[str, dict]:
    n = len(y)
    tol = max(0.01, 2.0 / max(n, 1))
    acc = {k: float(v.float().mean()) for k, v in cols.items() if k.endswith("_correct")}
    eps_acc = curves["eps_acc"]
    steps_acc = curves["steps_acc"]
    whole = eps_acc[curves["eps"].index(whole_box)]
    model.eval()
    with torch.enable_grad():
        zero = int((gradient_norms(model, x, y, device, cfg.batch_size) == 0).sum())
    checks = {
        "eps_monotone": _check(_monotone(eps_acc, tol), eps_acc, f"accuracy non-increasing in eps (tol {tol:.3f})"),
        "whole_box_zero": _check(whole <= min(0.01, 1.0 / num_classes) + 1.0 / max(n, 1), whole,
                                 "accuracy at the whole-box budget is ~0 (below 1% and below chance)"),
        "steps_monotone": _check(_monotone(steps_acc, tol), steps_acc,
                                 f"more PGD steps never help the defender (tol {tol:.3f})"),
        "converged": _check(len(steps_acc) < 2 or steps_acc[-2] - steps_acc[-1] <= tol,
                            steps_acc[-2:], f"the last increase of steps drops accuracy by at most {tol:.3f}"),
        "fgsm_weaker_than_pgd": _check(acc["fgsm_correct"] >= acc["pgd_correct"] - tol,
                                       [acc["fgsm_correct"], acc["pgd_correct"]], "acc(FGSM) >= acc(PGD) - tol"),
        "targeted_weaker_than_untargeted": _check(
            acc["pgd_targeted_correct"] >= acc["pgd_correct"] - tol,
            [acc["pgd_targeted_correct"], acc["pgd_correct"]], "acc(random-targeted PGD) >= acc(PGD) - tol"),
        "nonzero_gradients": _check(zero == 0, zero, "no sample has an all-zero input gradient at the clean point"),
    }
    checks.update(output_checks(model, x, device))
    return checks
