"""Adaptive-attack tools for defences that break gradient attacks: BPDA and EOT.

Tramer et al. (2020) and Athalye et al. (2018): attack the whole defence end to end; where a
part has no useful gradient, differentiate through an approximation (BPDA); where a part is
random, average the gradient over its randomness (EOT).

**BPDA** (Backward Pass Differentiable Approximation). A defence declares a non-differentiable
part as ``bpda(f, g)``: the module computes exactly ``f(x)`` in the forward pass and, in the
backward pass, the vector-Jacobian product of ``g`` at the same ``x``. With ``g`` the identity
(the default) this is the straight-through estimator for quantisation, JPEG, thresholding and
the like. Because the approximation lives in the autograd graph, every gradient attack uses it
with no option to set: our PGD/FGSM, and AutoAttack's APGD and FAB in
:mod:`attnrobust.attacks.autoattack`. Clean predictions are unchanged (the forward value is
``f(x)``, bit for bit). A defence that hides its non-differentiable part from the attack is
what the gradient-masking checks (:mod:`attnrobust.attacks.sanity`) exist to catch.

**EOT** (Expectation over Transformation) is the ``eot_samples`` argument of
:func:`attnrobust.attacks.pgd.pgd` (``attack.eot_samples``): each step averages the input
gradient over that many forward passes of a randomised model, and success is judged on a
fresh forward pass, never on one of the passes that made the gradient (a lucky random pass
must not count as a broken sample).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

InputFn = Callable[[Tensor], Tensor]


def identity(x: Tensor) -> Tensor:
    return x


class _BPDAFunction(torch.autograd.Function):
    """Forward: ``forward_fn(x)``; backward: the gradient of ``backward_fn`` at ``x``."""

    @staticmethod
    def forward(ctx, x: Tensor, forward_fn: InputFn, backward_fn: InputFn) -> Tensor:
        ctx.save_for_backward(x)
        ctx.backward_fn = backward_fn
        return forward_fn(x)  # autograd is off inside Function.forward

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(ctx.backward_fn(x), x, grad_out)
        return grad, None, None


class BPDA(nn.Module):
    """``forward_fn`` in the forward pass, differentiated as ``backward_fn`` (default: identity).

    ``backward_fn`` must be differentiable and return a tensor shaped like ``forward_fn(x)``.
    """

    def __init__(self, forward_fn: InputFn, backward_fn: InputFn = identity) -> None:
        super().__init__()
        self.forward_fn, self.backward_fn = forward_fn, backward_fn

    def forward(self, x: Tensor) -> Tensor:
        return _BPDAFunction.apply(x, self.forward_fn, self.backward_fn)


def bpda(forward_fn: InputFn, backward_fn: InputFn = identity) -> BPDA:
    """``bpda(quantise)``: a quantiser that attacks see as the identity (straight-through)."""
    return BPDA(forward_fn, backward_fn)
