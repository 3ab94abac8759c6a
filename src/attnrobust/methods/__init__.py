"""Training objectives, one module per method, in a registry keyed by method id."""
from attnrobust.methods.base import Batch, Method
from attnrobust.methods.registry import METHODS, get_method

__all__ = ["METHODS", "Batch", "Method", "get_method"]
