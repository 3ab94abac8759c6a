"""Experiments: ``experiments.<name>`` in params.yaml = dataset + method + model + method params.

Example::

    experiments:
      gtsrb_pgd_at:
        dataset: gtsrb
        method: pgd_at
        model: cnn
        model_args: {width: 32}
        train: {epochs: 40}   # optional: overrides of the shared `train` section for this experiment
        train_eps: 8          # every other key belongs to the method's config dataclass
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnrobust.config import build, load_value
from attnrobust.errors import UserError
from attnrobust.methods.registry import get_method

DATASETS = ("gtsrb", "coco", "scenes", "video")
_COMMON = {"dataset", "method", "model", "model_args", "train"}


@dataclass(frozen=True)
class Experiment:
    name: str
    dataset: str  # one of DATASETS: which prepared data it trains and is attacked on
    method: str  # key of methods.METHODS
    model: str  # key of models.MODELS
    model_args: dict[str, Any] = field(default_factory=dict)  # extra constructor args, e.g. width
    method_config: Any = None  # the method's own config dataclass
    train: dict[str, Any] = field(default_factory=dict)  # overrides of the shared `train` section

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("dataset", "method", "model", "model_args", "train")}
        out.update(dataclasses.asdict(self.method_config))
        return out


def parse_experiment(name: str, values: Any, where: str) -> Experiment:
    """Validate one experiment entry strictly; the method decides which extra keys are allowed."""
    if not isinstance(values, dict):
        raise UserError(f"{where}: expected a mapping")
    for key in ("dataset", "method", "model"):
        if key not in values:
            raise UserError(f"{where}: missing key '{key}'")
    if values["dataset"] not in DATASETS:
        raise UserError(f"{where}.dataset: {values['dataset']!r} is not one of {', '.join(DATASETS)}")
    try:
        method = get_method(values["method"])
    except UserError as exc:
        raise UserError(f"{where}.method: {exc}") from exc
    model_args = values.get("model_args", {}) or {}
    if not isinstance(model_args, dict):
        raise UserError(f"{where}.model_args: expected a mapping")
    train = values.get("train", {}) or {}
    if not isinstance(train, dict):
        raise UserError(f"{where}.train: expected a mapping of `train` keys to override")
    own = {k: v for k, v in values.items() if k not in _COMMON}
    method_config = build(method.config, own, f"{where} (method {method.name})", defaults=True)
    return Experiment(name, values["dataset"], values["method"], values["model"], dict(model_args), method_config,
                      dict(train))


def load_experiment(params_path: Path, name: str) -> Experiment:
    """``experiments.<name>`` of the params file (read by :mod:`attnrobust.config`), parsed."""
    return parse_experiment(name, *load_value(params_path, f"experiments.{name}"))
