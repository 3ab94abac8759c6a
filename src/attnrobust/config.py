"""Strict, typed params: one frozen dataclass per params section.

The library never reads ``params.yaml`` itself; stage scripts call :func:`load_section`
and pass the resulting dataclass down. Unknown and missing keys fail before any work
starts, naming the key and the file.

**Profiles.** ``profile: <name>`` in the params file selects ``profiles/<name>.yaml`` next to
it, an overlay deep-merged over the params (:func:`apply_profile`) by :func:`read_params`, so
every stage sees the same resolved values and one key switches the whole pipeline between the
embedded default and paper-like sizes. dvc.yaml tracks each stage's sections of the overlay
(``profiles/${profile}.yaml: [attack]``), so DVC re-runs exactly what a profile changes.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from attnrobust.errors import UserError

T = TypeVar("T")


def read_params(path: Path) -> dict[str, Any]:
    """Parse a params YAML file into a dict, with its profile overlay applied (:func:`apply_profile`);
    a clear error if either file is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: params file not found (run from the repository root or pass --params)")
    return apply_profile(_read_mapping(path), path)


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    return data


PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # a file name in profiles/, never a path


def apply_profile(params: dict[str, Any], path: Path) -> dict[str, Any]:
    """``params`` with ``profiles/<params["profile"]>.yaml`` (next to ``path``) deep-merged over it.

    Mappings merge key by key; any other value (lists included) replaces the one beneath. Without
    a ``profile`` key the params are returned as they are. The overlay must name every section
    of the params file (``{}`` where it changes nothing), because dvc.yaml tracks each stage's
    sections of the overlay and DVC refuses a missing one. It may change experiments but not add
    or remove them or change their dataset: dvc.yaml expands ``train@``/``attack@`` from
    params.yaml's ``experiments`` and wires each to its dataset's prepared data.
    """
    name = params.get("profile")
    if name is None:
        return params
    if not isinstance(name, str) or not PROFILE_NAME.fullmatch(name):
        raise UserError(f"{path}: profile: {name!r} is not a profile name (a file in profiles/, without .yaml)")
    overlay_path = Path(path).parent / "profiles" / f"{name}.yaml"
    if not overlay_path.is_file():
        known = sorted(p.stem for p in overlay_path.parent.glob("*.yaml"))
        raise UserError(f"{path}: profile: no file {overlay_path} (available: {', '.join(known) or 'none'}); "
                        "fix the name or add the overlay")
    overlay = _read_mapping(overlay_path)
    _check_overlay(params, overlay, overlay_path)
    experiments = expand_experiment_rules(params.get("experiments") or {}, overlay["experiments"])
    return deep_merge(params, {**overlay, "experiments": experiments})


# Rules in a profile's `experiments`, applied in this order before entries named by experiment:
# `"*"` (every experiment), then `dataset=<d>`, `method=<m>` and `model=<m>` (those that match).
RULE_FIELDS = ("dataset", "method", "model")


def _rule_field(key: str) -> str | None:
    field, sep, _ = key.partition("=")
    return field if sep and field in RULE_FIELDS else None


def expand_experiment_rules(experiments: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """The per-experiment overrides that ``overlay`` (a profile's ``experiments``) means: rules
    (``"*"``, ``dataset=``/``method=``/``model=<value>``) merged in order of generality, then the
    entries named by experiment. So a profile shrinks every experiment, including one added to
    params.yaml later, without naming it."""
    out = {}
    for name, values in experiments.items():
        merged: dict[str, Any] = dict(overlay.get("*") or {})
        for field in RULE_FIELDS:
            merged = deep_merge(merged, overlay.get(f"{field}={values.get(field)}") or {})
        out[name] = deep_merge(merged, overlay.get(name) or {})
    return {name: values for name, values in out.items() if values}


# Keys that dvc.yaml interpolates (stage names, dependency paths): DVC reads them from params.yaml
# and never sees a profile, so a profile that set them would run one thing and record another.
DVC_ONLY_KEYS = ("train.seeds",)  # and every data.<dataset>.local_dir
_ABSENT = object()


def _check_overlay(params: dict[str, Any], overlay: dict[str, Any], where: Path) -> None:
    sections = set(params) - {"profile"}
    if "profile" in overlay:
        raise UserError(f"{where}: a profile cannot select another profile; remove its `profile` key")
    if unknown := sorted(set(overlay) - sections):
        raise UserError(f"{where}: unknown section(s) {', '.join(unknown)} "
                        f"(params sections: {', '.join(sorted(sections))})")
    if missing := sorted(sections - set(overlay)):
        raise UserError(f"{where}: missing section(s) {', '.join(missing)}; a profile names every section of the "
                        "params file, `{}` where it changes nothing (dvc.yaml tracks them per stage)")
    for dotted in DVC_ONLY_KEYS + tuple(f"data.{d}.local_dir" for d in (overlay.get("data") or {})):
        node: Any = overlay
        for part in dotted.split("."):
            node = node.get(part, _ABSENT) if isinstance(node, dict) else _ABSENT
        if node is not _ABSENT:
            raise UserError(f"{where}: {dotted}: DVC reads this key from params.yaml only (it names stages or "
                            f"their dependencies), so a profile cannot set it; remove it from {where.name} and set "
                            f"it in params.yaml or with `dvc exp run -S {dotted}=...`")
    experiments = overlay["experiments"]
    if not isinstance(experiments, dict):
        raise UserError(f"{where}: experiments: expected a mapping of experiment -> overrides")
    rules = {k for k in experiments if k == "*" or _rule_field(k)}
    if added := sorted(set(experiments) - rules - set(params.get("experiments") or {})):
        raise UserError(f"{where}: experiments: {', '.join(added)} not in params.yaml; a profile changes "
                        "experiments but cannot add or remove them (add it to params.yaml), or is a rule: "
                        "'*', dataset=<d>, method=<m> or model=<m>")
    for exp, values in experiments.items():
        if not isinstance(values, dict):
            raise UserError(f"{where}: experiments.{exp}: expected a mapping of overrides")
        if "dataset" in values and (exp in rules or values["dataset"] != params["experiments"][exp].get("dataset")):
            raise UserError(f"{where}: experiments.{exp}.dataset: a profile cannot change an experiment's dataset "
                            "(dvc.yaml wires it to its data); add a new experiment to params.yaml instead")


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``base`` with ``over`` merged in, recursively for mappings on both sides."""
    merged = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = deep_merge(base[key], value) if both else value
    return merged


def get_key(params: dict[str, Any], dotted: str, source: Path | str) -> Any:
    """Return ``params[a][b]...`` for ``dotted='a.b'``; a missing key names itself and the file."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise UserError(f"{source}: missing key '{dotted}'")
        node = node[part]
    return node


def build(cls: type[T], values: Any, where: str, *, defaults: bool = False) -> T:
    """Build dataclass ``cls`` from a mapping, recursively and strictly.

    ``where`` is the dotted key path plus file, used in every error message, e.g.
    ``"params.yaml: attack"``. Nested dataclass fields, ``list[...]``, ``dict[str, ...]``
    and ``Literal`` fields are checked; ints are accepted where floats are expected.

    A params section must carry every key of its dataclass: a missing key is an error, never
    a silent fall-back to the code's default (``tests/test_config.py`` also checks that those
    defaults, kept for the Python API, equal params.yaml). ``defaults=True`` lets fields with a
    default be omitted; only a method's own keys in ``experiments.<exp>`` use it, where an
    omitted key is the method's documented default.
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
            if defaults and has_default:
                continue
            raise UserError(f"{where}: missing key '{name}' (add it to the params file; see params.yaml for its "
                            "meaning and the value the default pipeline uses)")
        kwargs[name] = _coerce(hints[name], values[name], f"{where}.{name}", defaults)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # __post_init__ range checks
        raise UserError(f"{where}: {exc}") from exc


def _coerce(tp: Any, value: Any, where: str, defaults: bool = False) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where, defaults=defaults)
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
                return _coerce(arg, value, where, defaults)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise UserError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        out = [_coerce(item, v, f"{where}[{i}]", defaults) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        return {k: _coerce(args[1], v, f"{where}.{k}", defaults) for k, v in value.items()}
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


def load_value(path: Path, dotted: str) -> tuple[Any, str]:
    """``(value, where)``: ``dotted`` of the params file at ``path`` (profile applied) and the text
    naming it in errors. The one reader of params files besides :func:`load_section`."""
    path = Path(path)
    return get_key(read_params(path), dotted, path), f"{path}: {dotted}"


def load_section(path: Path, dotted: str, cls: type[T]) -> T:
    """Read ``dotted`` from the params file at ``path`` and build ``cls`` strictly."""
    path = Path(path)
    return build(cls, get_key(read_params(path), dotted, path), f"{path}: {dotted}")


def as_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass as plain JSON-able dict (for checkpoints and logs)."""
    return dataclasses.asdict(cfg)
