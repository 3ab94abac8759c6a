"""Gradient-masking sanity checks (Carlini et al. 2019; AutoAttack's run-time flags).

Each check returns ``{"passed": bool, "value": ..., "rule": str}``; a result that fails any of
them is marked ``unreliable``. Tolerances: ``tol = max(1 pp, 2 samples)``, so a handful of
random-start flips on a small subset does not raise a false alarm.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnrobust.units import tolerance  # noqa: F401  (checks and claims share one tolerance)


def check(passed: bool, value, rule: str) -> dict:
    return {"passed": bool(passed), "value": value, "rule": rule}


def monotone(values: list[float], tol: float) -> bool:
    return all(b <= a + tol for a, b in zip(values, values[1:]))


def gradient_norms(model: nn.Module, x: Tensor, y: Tensor, device, batch_size: int, loss_fn=None,
                   perturb_mask_fn=None) -> Tensor:
    """L1 norm of the input gradient per sample, at the clean point, where the attacker may perturb.

    ``loss_fn(logits, y)`` defaults to summed cross-entropy; ``perturb_mask_fn(x)`` (default: all
    of ``x``) gives the perturbable entries, e.g. valid video frames without their flag.
    """
    loss_fn = loss_fn or (lambda logits, t: F.cross_entropy(logits, t, reduction="sum"))
    norms = []
    for start in range(0, len(y), batch_size):
        xb = x[start:start + batch_size].to(device).requires_grad_(True)
        grad = torch.autograd.grad(loss_fn(model(xb), y[start:start + batch_size].to(device)), xb)[0]
        if perturb_mask_fn is not None and (mask := perturb_mask_fn(xb.detach())) is not None:
            grad = grad * mask
        norms.append(grad.abs().flatten(1).sum(1).cpu())
    return torch.cat(norms)


def output_checks(model: nn.Module, x: Tensor, device, multilabel: bool = False) -> dict[str, dict]:
    """Deterministic logits over two passes, and outputs that are logits, not probabilities
    (softmax rows, or for ``multilabel`` sigmoid outputs: every value in [0, 1])."""
    with torch.no_grad():
        xb = x[:64].to(device)
        a, b = model(xb), model(xb)
    rows_sum_to_one = multilabel or torch.allclose(a.sum(1), torch.ones(len(a), device=a.device), atol=1e-4)
    probs_like = bool((a >= 0).all() and (a <= 1).all() and rows_sum_to_one)
    return {
        "deterministic": check(torch.allclose(a, b, atol=1e-4), float((a - b).abs().max()),
                                "two clean forward passes give the same logits (atol 1e-4)"),
        "outputs_are_logits": check(not probs_like, probs_like, "outputs are not already softmax probabilities"),
    }


def trend_checks(eps_curve: list[float], steps_curve: list[float], fgsm: float, pgd: float, tol: float,
                 metric: str = "accuracy") -> dict[str, dict]:
    """The checks on a score that a stronger attack can only lower (accuracy, GAP): the eps and
    steps curves are non-increasing, the last increase of steps has converged, FGSM is weaker than PGD."""
    return {
        "eps_monotone": check(monotone(eps_curve, tol), eps_curve, f"{metric} non-increasing in eps (tol {tol:.3f})"),
        "steps_monotone": check(monotone(steps_curve, tol), steps_curve,
                                 f"more PGD steps never help the defender (tol {tol:.3f})"),
        "converged": check(len(steps_curve) < 2 or steps_curve[-2] - steps_curve[-1] <= tol, steps_curve[-2:],
                            f"the last increase of steps drops {metric} by at most {tol:.3f}"),
        "fgsm_weaker_than_pgd": check(fgsm >= pgd - tol, [fgsm, pgd], f"{metric}(FGSM) >= {metric}(PGD) - tol"),
    }


def run_sanity_checks(model, x, y, cols: dict[str, Tensor], curves: dict, cfg, *, num_classes: int, device,
                      whole_box: int, perturbable: bool = True) -> dict[str, dict]:
    """The suite's gradient-masking checks. ``perturbable=False``: the threat model leaves the
    attacker nothing to change (the mask-only floor), so the whole box must leave clean accuracy
    as it is rather than drive it to zero."""
    n = len(y)
    tol = tolerance(n)
    acc = {k: float(v.float().mean()) for k, v in cols.items() if k.endswith("_correct")}
    whole = curves["eps_acc"][curves["eps"].index(whole_box)]
    model.eval()
    with torch.enable_grad():
        zero = int((gradient_norms(model, x, y, device, cfg.batch_size) == 0).sum())
    checks = trend_checks(curves["eps_acc"], curves["steps_acc"], acc["fgsm_correct"], acc["pgd_correct"], tol)
    checks |= {
        "whole_box_zero": check(whole <= min(0.01, 1.0 / num_classes) + 1.0 / max(n, 1), whole,
                                 "accuracy at the whole-box budget is ~0 (below 1% and below chance)")
        if perturbable else check(abs(whole - acc["clean_correct"]) < 1e-9, [whole, acc["clean_correct"]],
                                  "nothing perturbable: accuracy at the whole-box budget equals clean accuracy"),
        "targeted_weaker_than_untargeted": check(
            acc["pgd_targeted_correct"] >= acc["pgd_correct"] - tol,
            [acc["pgd_targeted_correct"], acc["pgd_correct"]], "acc(random-targeted PGD) >= acc(PGD) - tol"),
        "nonzero_gradients": check(zero == 0, zero, "no sample has an all-zero input gradient at the clean point"),
    }
    checks.update(output_checks(model, x, device))
    if cfg.eot_samples > 1 and not checks["deterministic"]["passed"]:  # as AutoAttack's `rand` version skips it
        checks["deterministic"] = check(True, checks["deterministic"]["value"],
                                         f"randomised logits, attacked with EOT over {cfg.eot_samples} passes")
    return checks


def square_check(white_box_correct: Tensor, square_correct: Tensor) -> dict:
    """Black box no stronger than white box (AutoAttack's ``check_square_sr``, per sample).

    Square runs after the white-box attacks on the points they left standing; if it breaks more
    than ``max(0.2 pp, 1 sample)`` of the points every white-box attack left standing, the
    gradients mislead the white-box attacks (gradient masking). ``white_box_correct`` is the
    per-sample AND over every white-box attack; ``square_correct`` is AutoAttack's cumulative
    column, -1 where AutoAttack did not run (those samples are left out).
    """
    ran = square_correct >= 0
    white_box = white_box_correct[ran].bool()
    n = int(ran.sum())
    acc_white = float(white_box.float().mean()) if n else float("nan")
    acc_square = float((white_box & (square_correct[ran] == 1)).float().mean()) if n else float("nan")
    tol = max(0.002, 1.0 / max(n, 1))
    return check(not n or acc_square >= acc_white - tol - 1e-9, [acc_square, acc_white],
                  f"acc(white-box + Square) >= acc(white-box) - {tol:.3f}: Square breaks at most that "
                  f"share of the points every white-box attack left standing")
