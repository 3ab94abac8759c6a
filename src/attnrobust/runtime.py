"""Device choice, numeric precision, seeding and determinism, shared by training and attack stages."""
from __future__ import annotations

import functools
import os
import random
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from attnrobust.distributed import is_main
from attnrobust.errors import UserError

T = TypeVar("T")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU is a user error.

    Under torchrun each process of a machine takes its own GPU, the ``LOCAL_RANK``-th.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device: cuda requested but no CUDA device is available (use device: auto or cpu)")
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` (``auto`` | ``fp32`` | ``bf16``) on ``device``; None = plain fp32.

    ``auto`` is bf16 on a CUDA GPU that supports it and fp32 elsewhere: on a CPU, bf16 autocast is
    slower without AMX and changes results for nothing, so it runs only when asked for (tests).
    """
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if name == "bf16":
        return torch.bfloat16
    if name == "fp32":
        return None
    raise UserError(f"precision: {name!r} is not one of 'auto', 'fp32', 'bf16'")


def autocast_forward(model: nn.Module, device: torch.device, precision: str) -> nn.Module:
    """Make ``model``'s forward passes run under bf16 autocast and return fp32 outputs; returns ``model``.

    Only the network runs in bf16. Its outputs (logits, attention maps) come back in fp32, so
    losses, input gradients, projections onto the eps-ball, argmax and AutoAttack's margins are
    all computed in fp32 wherever the model is called, with no change at those call sites. It
    wraps ``forward`` and ``forward_with_attention`` on this instance (not a wrapper module), so
    ``model.glances``, the parameters and the ``state_dict`` stay the model's own. A no-op for fp32.
    """
    dtype = resolve_precision(precision, device)
    if dtype is None:
        return model
    for name in ("forward", "forward_with_attention"):
        if hasattr(model, name):
            setattr(model, name, _autocast(getattr(model, name), device.type, dtype))
    return model


def _autocast(fn, device_type: str, dtype: torch.dtype):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with torch.autocast(device_type, dtype=dtype):
            out = fn(*args, **kwargs)
        return _to_fp32(out)

    return run


def _to_fp32(out):
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, (list, tuple)):
        return type(out)(_to_fp32(o) for o in out)
    return out


def deterministic_kernels() -> None:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` without its import of
    ``torch._inductor`` (and dynamo, sympy), which costs 1.5-3 s of every stage's start here: each
    stage is a fresh process. That import only sets the inductor's own flag; this project compiles
    nothing, and where something already loaded the inductor, its flag is set as torch sets it."""
    if (inductor := sys.modules.get("torch._inductor.config")) is not None:
        inductor.deterministic = True
    torch._C._set_deterministic_algorithms(True, warn_only=True)


def seed_everything(seed: int, threads: int = 0) -> torch.Generator:
    """Seed python, numpy and torch; deterministic kernels; returns a CPU generator for sampling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads > 0:
        torch.set_num_threads(threads)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    deterministic_kernels()
    torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def show_progress() -> bool:
    """Progress bars only on a terminal: quiet in CI logs and `dvc queue logs`."""
    return sys.stderr.isatty() and is_main()  # several processes: one bar, process 0's


def progress(items: Iterable[T] | None = None, desc: str = "", **kwargs: Any) -> tqdm:
    """A tqdm bar over ``items`` (or a manual one with ``total=``) that is silent unless
    :func:`show_progress`; it does not linger after it finishes, so the stage's summary line stays last."""
    return tqdm(items, desc=desc, disable=not show_progress(), leave=False, dynamic_ncols=True, **kwargs)
