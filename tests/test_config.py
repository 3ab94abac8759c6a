"""Strict params: unknown, missing and out-of-range keys fail with the key and the file named."""
from dataclasses import dataclass, field

import pytest
import yaml

from attnrobust.attacks.suite import AttackConfig
from attnrobust.config import build, load_section
from attnrobust.errors import UserError
from attnrobust.experiment import parse_experiment

from conftest import ROOT


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


def test_build_with_defaults_lets_defaulted_keys_be_omitted():
    """Only a method's own keys in an experiment may be omitted (its documented defaults)."""
    cfg = build(Outer, {"inner": {"a": 1}}, "p.yaml: s", defaults=True)
    assert cfg.inner.b == 1.0 and cfg.names == []


@pytest.mark.parametrize("values,needle", [
    ({"inner": {"a": 1, "c": 2}}, "unknown key(s) c"),
    ({"inner": {}}, "missing key 'a'"),
    ({"inner": {"a": "one"}}, "p.yaml: s.inner.a: expected an integer"),
    ({"inner": {"a": True}}, "expected an integer"),
    ({"inner": {"a": 1, "b": 1.0}, "names": "x"}, "expected a list"),
    ({"inner": {"a": 1}, "names": []}, "missing key 'b'"),  # a default never stands in for a params key
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
    attack = yaml.safe_load((ROOT / "params.yaml").read_text())["attack"]
    p.write_text(yaml.safe_dump({"attack": {**attack, "eps": -1}}))
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
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.01, weight_decay=0.0, seeds=[0])
    with pytest.raises(UserError, match="experiments.e.train: unknown key.*epocs"):
        train_experiment(exp, cfg, tmp_path, tmp_path / "o", tmp_path / "l")


def test_a_run_has_one_of_the_shared_seeds():
    from attnrobust.training import TrainConfig, experiment_config

    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.01, weight_decay=0.0, seeds=[0, 1, 2])
    exp = parse_experiment("e", {"dataset": "gtsrb", "method": "standard", "model": "cnn"}, "p: e")
    assert experiment_config(exp, cfg, 2).seed == 2 and experiment_config(exp, cfg).seed == 0  # default: the first
    with pytest.raises(UserError, match=r"seed 5 is not in train.seeds \[0, 1, 2\]"):
        experiment_config(exp, cfg, 5)
    own = parse_experiment("e", {"dataset": "gtsrb", "method": "standard", "model": "cnn", "train": {"seeds": [7]}},
                           "p: e")
    with pytest.raises(UserError, match="experiments.e.train.seeds: seeds are shared"):
        experiment_config(own, cfg, 0)
    with pytest.raises(ValueError, match="a training run has one seed"):
        cfg.seed  # noqa: B018  (the shared config has three)
    with pytest.raises(UserError, match="distinct seeds"):
        build(TrainConfig, {**_train(), "seeds": [1, 1]}, "p: train")


def _train() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "params.yaml").read_text())["train"]


# Every params section, with the dataclass that reads it (a missing key must be an error there).
def _sections():
    from attnrobust.data.synthetic.coco import CocoSynthConfig
    from attnrobust.data.synthetic.gtsrb import GtsrbSynthConfig
    from attnrobust.data.prepare import CocoPrepareConfig, GtsrbPrepareConfig
    from attnrobust.detect.config import DetectorSpec
    from attnrobust.training import TrainConfig
    from attnrobust.video.features import FeaturesConfig
    from attnrobust.video.fetch import VideoDataConfig

    return {"data.gtsrb": GtsrbSynthConfig, "data.coco": CocoSynthConfig, "data.video": VideoDataConfig,
            "masks.gtsrb": GtsrbPrepareConfig, "masks.coco": CocoPrepareConfig, "features": FeaturesConfig,
            "train": TrainConfig, "attack": AttackConfig, "detectors.gtsrb_iqa_kd": DetectorSpec}


def _leaf_keys(cls, prefix=""):
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _leaf_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f


@pytest.mark.parametrize("section", list(_sections()))
def test_every_key_of_a_section_is_required(section):
    """Deleting any key from params.yaml is an error naming it, never a silent code default
    (once: attack.n_samples 500 instead of 200, data.coco.train_images 1200 instead of 1000)."""
    import copy

    from attnrobust.config import build, get_key, read_params

    cls = _sections()[section]
    values = get_key(read_params(ROOT / "params.yaml"), section, "params.yaml")
    build(cls, values, section)  # complete as committed
    for key, _ in _leaf_keys(cls):
        broken = copy.deepcopy(values)
        *parents, leaf = key.split(".")
        node = broken
        for part in parents:
            node = node[part]
        del node[leaf]
        with pytest.raises(UserError, match=f"missing key '{leaf}'"):
            build(cls, broken, f"params.yaml: {section}")


@pytest.mark.parametrize("section", list(_sections()))
def test_code_defaults_equal_params_yaml(section):
    """The defaults kept for the Python API (``AttackConfig(eps=8, steps=10)``) say what the
    default pipeline does; they never disagree with params.yaml."""
    import dataclasses

    from attnrobust.config import get_key, read_params

    values = get_key(read_params(ROOT / "params.yaml"), section, "params.yaml")
    for key, f in _leaf_keys(_sections()[section]):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            continue
        if key == "head_baselines":  # names experiments, so it has no meaning outside params.yaml
            continue
        node = values
        for part in key.split("."):
            node = node[part]
        assert (list(default) if isinstance(default, tuple) else default) == node, f"{section}.{key}"
