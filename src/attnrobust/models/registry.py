"""Model registry: a name in params.yaml -> a constructor."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from attnrobust.errors import UserError
from attnrobust.models.cnn import SmallResNet
from attnrobust.models.masked import MaskedResNet
from attnrobust.models.protoattn import ProtoAttnNet
from attnrobust.models.s3ta import S3TA
from attnrobust.models.video_transformer import VideoTransformer

MODELS: dict[str, Callable[..., nn.Module]] = {
    "cnn": SmallResNet,
    "masked_cnn": MaskedResNet,  # x = [rgb, mask] (N, 4, H, W); classifies rgb * mask
    "s3ta": S3TA,
    "protoattn": ProtoAttnNet,  # two heads (FR prototypes, A attentional pooling); `head` picks forward()'s
    "video_transformer": VideoTransformer,
}


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name``; unknown names and arguments are user errors.

    ``kwargs`` are the task's data-derived arguments (e.g. ``num_classes``, ``mean``, ``std``)
    plus the experiment's ``model_args``; checkpoints store them to rebuild the model.
    """
    if name not in MODELS:
        raise UserError(f"unknown model '{name}' (known: {', '.join(sorted(MODELS))})")
    try:
        return MODELS[name](**kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(f"model '{name}': bad model_args ({exc})") from exc
