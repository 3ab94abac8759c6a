"""Strict params: unknown, missing and out-of-range keys fail with the key and the file named."""
from dataclasses import dataclass, field

import pytest
import yaml

from attnrobust.attacks.suite import AttackConfig
from attnrobust.config import build, load_section
from attnrobust.errors import UserError
from attnrobust.experiment import parse_experiment


@dataclass(frozen=True)
class Inner:
    a: int
    b: float = 1.0


@dataclass(frozen=True)
class Outer:
    inner: Inner
    names: list[str] = field(default_factory=list)


def test_build_nested_and_coerces_int_to_float():
    cfg = build(Outer, {"inner": {"a": 1, "b": 2}, "names": ["x"]}, "p.yaml: s")
    assert cfg.inner.b == 2.0 and isinstance(cfg.inner.b, float) and cfg.names == ["x"]


@pytest.mark.parametrize("values,needle", [
    ({"inner": {"a": 1, "c": 2}}, "unknown key(s) c"),
    ({"inner": {}}, "missing key 'a'"),
    ({"inner": {"a": "one"}}, "p.yaml: s.inner.a: expected an integer"),
    ({"inner": {"a": True}}, "expected an integer"),
    ({"inner": {"a": 1}, "names": "x"}, "expected a list"),
])
def test_build_rejects_bad_values(values, needle):
    with pytest.raises(UserError, match=None) as err:
        build(Outer, values, "p.yaml: s")
    assert needle in str(err.value) and "p.yaml" in str(err.value)


def test_load_section_names_file_and_key(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump({"attack": {"eps": 8, "steps": 10, "stepz": 3}}))
    with pytest.raises(UserError) as err:
        load_section(p, "attack", AttackConfig)
    assert str(p) in str(err.value) and "stepz" in str(err.value)
    with pytest.raises(UserError, match="missing key 'nope'"):
        load_section(p, "nope", AttackConfig)


def test_negative_eps_is_out_of_range(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump({"attack": {"eps": -1, "steps": 10}}))
    with pytest.raises(UserError, match="eps must be >= 0"):
        load_section(p, "attack", AttackConfig)


def test_missing_params_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="params file not found"):
        load_section(tmp_path / "nope.yaml", "attack", AttackConfig)


def test_experiment_method_keys_are_checked_by_the_method():
    exp = parse_experiment("e", {"dataset": "gtsrb", "method": "pgd_at", "model": "cnn", "train_eps": 4}, "p: e")
    assert exp.method_config.train_eps == 4
    with pytest.raises(UserError, match="unknown key"):
        parse_experiment("e", {"dataset": "gtsrb", "method": "standard", "model": "cnn", "train_eps": 4}, "p: e")
    with pytest.raises(UserError, match="unknown method 'magic'"):
        parse_experiment("e", {"dataset": "gtsrb", "method": "magic", "model": "cnn"}, "p: e")
    with pytest.raises(UserError, match="dataset"):
        parse_experiment("e", {"dataset": "mnist", "method": "standard", "model": "cnn"}, "p: e")


def test_experiment_train_overrides_are_strict(tmp_path):
    from attnrobust.training import TrainConfig, train_experiment

    exp = parse_experiment("e", {"dataset": "gtsrb", "method": "standard", "model": "cnn", "train": {"epocs": 3}},
                           "p: e")
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.01, weight_decay=0.0, seed=0)
    with pytest.raises(UserError, match="experiments.e.train: unknown key.*epocs"):
        train_experiment(exp, cfg, tmp_path, tmp_path / "o", tmp_path / "l")
