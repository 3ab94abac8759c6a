"""Architectures, in a registry keyed by name; every model takes inputs in their natural range
and normalises inside, so attacks never need to know about normalisation."""
from attnrobust.models.registry import MODELS, build_model

__all__ = ["MODELS", "build_model"]
