"""Checkpoints carry the config that built them and load with ``weights_only=True``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnrobust.errors import UserError
from attnrobust.models import build_model

FORMAT = 2


def model_spec(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """What rebuilds the model: its registry name and constructor arguments (plain JSON types)."""
    return {"name": name, "kwargs": dict(kwargs)}


def save_checkpoint(path: Path, model: nn.Module, spec: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write ``{format, model spec, meta, state_dict}`` atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"format": FORMAT, "model": spec, "meta": meta, "state_dict": model.state_dict()}, tmp)
    tmp.replace(path)


def read_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    return load_blob(path, "attnrobust checkpoint", FORMAT, "checkpoint not found; run `dvc repro train` first")


def load_blob(path: Path, kind: str, fmt: int, missing: str) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a dict saved with ``{"format": fmt}``; anything else is a
    UserError naming ``path`` (``missing`` says how to produce a file that is not there)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {missing}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise UserError(f"{path}: not a loadable {kind} ({exc})") from exc
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise UserError(f"{path}: not an {kind} (format {fmt} expected)")
    return blob


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    spec = ckpt["model"]
    model = build_model(spec["name"], **spec["kwargs"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def load_model(path: Path | str, expect_experiment: str | None = None) -> nn.Module:
    """Load a trained model in eval mode; it takes images in [0, 1] and returns logits.

    ``path`` is ``models/<exp>`` or the ``model.pt`` inside it. With ``expect_experiment`` a
    checkpoint trained for another experiment is refused.
    """
    ckpt = read_checkpoint(Path(path))
    found = ckpt["meta"].get("experiment")
    if expect_experiment is not None and found != expect_experiment:
        raise UserError(f"{path}: checkpoint belongs to experiment '{found}', not '{expect_experiment}'")
    return model_from_checkpoint(ckpt)
