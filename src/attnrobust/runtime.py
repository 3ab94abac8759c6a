"""Device choice, seeding and determinism, shared by training and attack stages."""
from __future__ import annotations

import os
import random
import sys

import numpy as np
import torch

from attnrobust.errors import UserError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device: cuda requested but no CUDA device is available (use device: auto or cpu)")
    return torch.device(name)


def seed_everything(seed: int, threads: int = 0) -> torch.Generator:
    """Seed python, numpy and torch; deterministic kernels; returns a CPU generator for sampling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads > 0:
        torch.set_num_threads(threads)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def show_progress() -> bool:
    """Progress bars only on a terminal: quiet in CI logs and `dvc queue logs`."""
    return sys.stderr.isatty()
