"""Model registry: a name in params.yaml -> a constructor."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from attnrobust.errors import UserError
from attnrobust.models.cnn import SmallResNet

MODELS: dict[str, Callable[..., nn.Module]] = {
    "cnn": SmallResNet,
}


def build_model(name: str, *, num_classes: int, mean: list[float], std: list[float], **kwargs: Any) -> nn.Module:
    """Build the registered model ``name``; unknown names and arguments are user errors."""
    if name not in MODELS:
        raise UserError(f"unknown model '{name}' (known: {', '.join(sorted(MODELS))})")
    try:
        return MODELS[name](num_classes=num_classes, mean=mean, std=std, **kwargs)
    except TypeError as exc:
        raise UserError(f"model '{name}': bad model_args ({exc})") from exc
