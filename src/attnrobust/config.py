"""Strict, typed params: one frozen dataclass per params section.

The library never reads ``params.yaml`` itself; stage scripts call :func:`load_section`
and pass the resulting dataclass down. Unknown and missing keys fail before any work
starts, naming the key and the file.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from attnrobust.errors import UserError

T = TypeVar("T")


def read_params(path: Path) -> dict[str, Any]:
    """Parse a params YAML file into a dict, with a clear error if it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: params file not found (run from the repository root or pass --params)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    return data


def get_key(params: dict[str, Any], dotted: str, source: Path | str) -> Any:
    """Return ``params[a][b]...`` for ``dotted='a.b'``; a missing key names itself and the file."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise UserError(f"{source}: missing key '{dotted}'")
        node = node[part]
    return node


def build(cls: type[T], values: Any, where: str) -> T:
    """Build dataclass ``cls`` from a mapping, recursively and strictly.

    ``where`` is the dotted key path plus file, used in every error message, e.g.
    ``"params.yaml: attack"``. Nested dataclass fields, ``list[...]``, ``dict[str, ...]``
    and ``Literal`` fields are checked; ints are accepted where floats are expected.
    """
    if not isinstance(values, dict):
        raise UserError(f"{where}: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, field in fields.items():
        if name not in values:
            has_default = field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
            if has_default:
                continue
            raise UserError(f"{where}: missing key '{name}'")
        kwargs[name] = _coerce(hints[name], values[name], f"{where}.{name}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # __post_init__ range checks
        raise UserError(f"{where}: {exc}") from exc


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if origin is typing.Literal:
        if value not in args:
            raise UserError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise UserError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        out = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        return {k: _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def load_section(path: Path, dotted: str, cls: type[T]) -> T:
    """Read ``dotted`` from the params file at ``path`` and build ``cls`` strictly."""
    path = Path(path)
    return build(cls, get_key(read_params(path), dotted, path), f"{path}: {dotted}")


def as_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass as plain JSON-able dict (for checkpoints and logs)."""
    return dataclasses.asdict(cfg)
