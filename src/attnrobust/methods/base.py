"""What a training method is: a config dataclass and a loss on one batch.

A new method is one module in this package that defines a :class:`Method` and adds it to
``METHODS`` in ``registry.py``, plus an entry under ``experiments`` in params.yaml.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from attnrobust.tasks import Task, Tensors


@dataclass(frozen=True)
class Batch:
    """One training batch in a task's format (see :class:`attnrobust.tasks.Tensors`).

    ``task`` supplies the loss and the threat model, so one method serves images and video.
    """

    x: Tensor
    y: Tensor
    mask: Tensor
    task: Task


@dataclass(frozen=True)
class NoConfig:
    """A method without parameters of its own."""


class LossFn(Protocol):
    def __call__(self, model: nn.Module, batch: Batch, cfg: Any, generator: torch.Generator) -> Tensor: ...


class BeginEpochFn(Protocol):
    def __call__(self, model: nn.Module, cfg: Any, epoch: int, epochs: int, train: Tensors, device) -> Any: ...


@dataclass(frozen=True)
class Method:
    """A training objective: ``loss(model, batch, cfg, generator)`` returns a scalar to minimise.

    ``config`` is the dataclass of the method's own keys in ``experiments.<exp>``. The loss
    is called with the model in train mode; a method that attacks the model during training
    must leave it in train mode when it returns (``attacks.pgd`` does).

    ``begin_epoch`` (optional) is for methods with training phases: it is called before every
    epoch (0-based ``epoch`` of ``epochs``) with the training split, may freeze parameters
    (``requires_grad``; the optimiser skips parameters without gradients) or change the model
    (e.g. project prototypes), and returns the config the loss gets in this epoch (e.g. a phase's
    coefficients). It must depend only on the epoch index and the model, so that resuming after
    any epoch gives the same run.
    """

    name: str
    config: type
    loss: LossFn
    description: str
    begin_epoch: BeginEpochFn | None = None
