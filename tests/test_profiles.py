"""Profiles: overlays in profiles/<name>.yaml, deep-merged over params.yaml by read_params."""
import shutil

import pytest
import yaml

from attnrobust.attacks.suite import AttackConfig
from attnrobust.config import build, deep_merge, load_section, read_params
from attnrobust.data.fetch import _generators
from attnrobust.data.prepare import PREPARERS
from attnrobust.errors import UserError
from attnrobust.experiment import load_experiment
from attnrobust.models import build_model
from attnrobust.training import TrainConfig
from attnrobust.video.features import FeaturesConfig
from attnrobust.video.fetch import VideoDataConfig

from conftest import ROOT

BASE = yaml.safe_load((ROOT / "params.yaml").read_text())
PROFILES = sorted(p.stem for p in (ROOT / "profiles").glob("*.yaml"))
SECTIONS = {k: {} for k in BASE if k != "profile"}  # every section of params.yaml, unchanged


def _params(tmp_path, profile, overlay=None, base=None):
    """params.yaml selecting ``profile`` in tmp_path, with the repo's profiles (plus ``overlay`` as it)."""
    shutil.copytree(ROOT / "profiles", tmp_path / "profiles", dirs_exist_ok=True)
    if overlay is not None:
        (tmp_path / "profiles" / f"{profile}.yaml").write_text(yaml.safe_dump(overlay))
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**(base or BASE), "profile": profile}))
    return path


def test_deep_merge_merges_mappings_and_replaces_everything_else():
    base = {"a": {"x": 1, "y": [1, 2], "z": {"k": 1}}, "b": 2}
    merged = deep_merge(base, {"a": {"y": [3], "z": {"j": 2}}, "c": 3})
    assert merged == {"a": {"x": 1, "y": [3], "z": {"k": 1, "j": 2}}, "b": 2, "c": 3}
    assert base == {"a": {"x": 1, "y": [1, 2], "z": {"k": 1}}, "b": 2}  # inputs untouched


def test_params_without_profile_are_read_as_they_are(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"attack": {"eps": 8}}))
    assert read_params(path) == {"attack": {"eps": 8}}


def test_default_profile_is_params_yaml_as_it_is(tmp_path):
    resolved = read_params(_params(tmp_path, "default"))
    assert {k: v for k, v in resolved.items() if k != "profile"} == {k: v for k, v in BASE.items() if k != "profile"}


def test_overlay_values_win_and_the_rest_comes_from_params(tmp_path):
    overlay = {**SECTIONS, "attack": {"n_samples": 7, "eps_sweep": [2]},
               "experiments": {"gtsrb_pgd_at": {"model_args": {"width": 8}, "train_steps": 2}}}
    path = _params(tmp_path, "mine", overlay)
    attack = load_section(path, "attack", AttackConfig)
    assert (attack.n_samples, attack.eps_sweep, attack.eps) == (7, [2], BASE["attack"]["eps"])
    exp = load_experiment(path, "gtsrb_pgd_at")
    assert exp.model_args == {"width": 8} and exp.method_config.train_steps == 2
    assert exp.method_config.train_eps == BASE["experiments"]["gtsrb_pgd_at"]["train_eps"]


@pytest.mark.parametrize("overlay,needle", [
    ({**SECTIONS, "atack": {"eps": 4}}, "unknown section(s) atack"),
    ({k: v for k, v in SECTIONS.items() if k != "claims"}, "missing section(s) claims"),
    ({**SECTIONS, "profile": "full"}, "cannot select another profile"),
    ({**SECTIONS, "experiments": {"gtsrb_new": {"dataset": "gtsrb"}}}, "gtsrb_new not in params.yaml"),
    ({**SECTIONS, "experiments": {"gtsrb_standard": {"dataset": "coco"}}}, "cannot change an experiment's dataset"),
    ({**SECTIONS, "experiments": {"gtsrb_standard": None}}, "experiments.gtsrb_standard: expected a mapping"),
    # keys dvc.yaml interpolates are read from params.yaml only: a profile setting them is refused at run time
    ({**SECTIONS, "train": {"seeds": [0]}}, "train.seeds: DVC reads this key from params.yaml only"),
    ({**SECTIONS, "data": {"gtsrb": {"local_dir": "/data/gtsrb"}}}, "data.gtsrb.local_dir: DVC reads this key"),
    ([1, 2], "expected a mapping at the top level"),
])
def test_bad_overlay_is_refused_naming_the_file(tmp_path, overlay, needle):
    path = _params(tmp_path, "bad", overlay)
    with pytest.raises(UserError) as err:
        read_params(path)
    assert needle in str(err.value) and "profiles/bad.yaml" in str(err.value)


@pytest.mark.parametrize("name,needle", [("fulll", "available: "), ("../params", "is not a profile name"),
                                         (3, "is not a profile name")])
def test_unknown_or_unsafe_profile_name_is_refused(tmp_path, name, needle):
    path = _params(tmp_path, "default")
    path.write_text(yaml.safe_dump({**BASE, "profile": name}))
    with pytest.raises(UserError, match=None) as err:
        read_params(path)
    assert needle in str(err.value) and str(path) in str(err.value)
    if name == "fulll":
        assert "default" in str(err.value) and "full" in str(err.value)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_resolves_and_parses_strictly(tmp_path, profile):
    """What each stage builds from a profile, so a typo in profiles/full.yaml fails here, not on a GPU."""
    path = _params(tmp_path, profile)
    params = read_params(path)
    assert set(yaml.safe_load((ROOT / "profiles" / f"{profile}.yaml").read_text())) == set(BASE) - {"profile"}
    for dataset, gen in _generators().items():
        build(gen.config, params["data"][dataset], f"{path}: data.{dataset}")
        load_section(path, f"masks.{dataset}", PREPARERS[dataset][0])
    build(VideoDataConfig, params["data"]["video"], f"{path}: data.video")
    features = load_section(path, "features", FeaturesConfig)
    load_section(path, "attack", AttackConfig)
    train = load_section(path, "train", TrainConfig)
    image = {"num_classes": 3, "mean": [0.5] * 3, "std": [0.25] * 3}
    video = {"num_classes": 3, "feature_dim": features.dim, "max_frames": features.max_frames}
    for name in params["experiments"]:
        exp = load_experiment(path, name)
        build(TrainConfig, {**train.__dict__, **exp.train}, f"{path}: experiments.{name}.train")
        build_model(exp.model, **(video if exp.dataset == "video" else image), **exp.model_args)


def test_tiny_profile_shrinks_every_experiment_by_rule(tmp_path):
    """Without a rule for its model an experiment would train at full size in the end-to-end test;
    the rules name models and methods, never an experiment."""
    tiny = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
    assert all(key == "*" or "=" in key for key in tiny["experiments"]), "rules only, no experiment names"
    resolved = read_params(_params(tmp_path, "tiny"))["experiments"]
    for name, exp in resolved.items():
        assert f"model={exp['model']}" in tiny["experiments"], f"{name}: add a model={exp['model']} rule"
        assert exp["model_args"] and exp["train"]["epochs"] <= 2, name


def test_rules_apply_in_order_of_generality_and_names_win():
    from attnrobust.config import expand_experiment_rules

    experiments = {"a": {"dataset": "gtsrb", "method": "pgd_at", "model": "cnn"},
                   "b": {"dataset": "video", "method": "standard", "model": "vt"}}
    overlay = {"*": {"x": 1, "y": 1}, "dataset=gtsrb": {"y": 2}, "model=cnn": {"y": 3, "z": {"w": 1}},
               "a": {"z": {"v": 2}}}
    assert expand_experiment_rules(experiments, overlay) == {"a": {"x": 1, "y": 3, "z": {"w": 1, "v": 2}},
                                                             "b": {"x": 1, "y": 1}}


def test_a_rule_cannot_change_the_dataset(tmp_path):
    path = _params(tmp_path, "tiny")
    tiny = yaml.safe_load((tmp_path / "profiles" / "tiny.yaml").read_text())
    tiny["experiments"]["model=cnn"]["dataset"] = "coco"
    (tmp_path / "profiles" / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    with pytest.raises(UserError, match="cannot change an experiment's dataset"):
        read_params(path)


def test_full_profile_is_real_data_at_paper_like_sizes(tmp_path):
    params = read_params(_params(tmp_path, "full"))
    assert params["data"]["source"] == "real" and params["attack"]["suite"] == "standard"
    assert params["attack"]["n_samples"] == 0 and params["train"]["epochs"] > BASE["train"]["epochs"]
    assert params["attack"]["eps"] == BASE["attack"]["eps"]  # not overridden: `-S attack.eps=4` keeps working
    for pair in params["claims"]["s3ta"] or BASE["claims"]["s3ta"]:  # S3TA's comparison: the same trunk
        s3ta, baseline = params["experiments"][pair["s3ta"]], params["experiments"][pair["baseline"]]
        assert s3ta["model_args"]["width"] == baseline["model_args"]["width"]


@pytest.mark.parametrize("name", PROFILES)
def test_no_profile_moves_a_dataset_copy(name):
    """masks@<dataset> lists data.<dataset>.local_dir as a DVC dependency, and DVC reads that path
    from params.yaml only: a profile that set it would make the stage read one folder while DVC
    tracks another. (Users set it in params.yaml or with `dvc exp run -S`; README: real data.)"""
    overlay = yaml.safe_load((ROOT / "profiles" / f"{name}.yaml").read_text()) or {}
    data = overlay.get("data") or {}
    assert not [ds for ds, section in data.items() if isinstance(section, dict) and "local_dir" in section]
