"""dvc.yaml against params.yaml: every stage lists exactly what it reads, every section parses strictly."""
import re

import pytest
import yaml

from attnrobust.attacks.suite import AttackConfig
from attnrobust.config import build, load_section
from attnrobust.data.fetch import _generators
from attnrobust.data.prepare import PREPARERS
from attnrobust.experiment import parse_experiment
from attnrobust.training import TrainConfig
from attnrobust.video.features import FeaturesConfig
from attnrobust.video.fetch import VideoDataConfig

from conftest import ROOT

PARAMS = ROOT / "params.yaml"


@pytest.fixture(scope="module")
def stages():
    from dvc.repo import Repo

    from dvc.dependency.param import ParamsDependency

    with Repo(str(ROOT)) as repo:
        out = {}
        for stage in repo.index.stages:
            by_file = {str(d.def_path): list(d.params) for d in stage.deps if isinstance(d, ParamsDependency)}
            out[stage.addressing] = {"params": by_file.pop("params.yaml", []), "profile": by_file,
                                     "outs": [str(o.def_path) for o in stage.outs],
                                     "cache": [o.use_cache for o in stage.outs]}
        return out


def _get(params, dotted):
    node = params
    for part in dotted.split("."):
        node = node[part]
    return node


def test_every_listed_param_exists(stages):
    params = yaml.safe_load(PARAMS.read_text())
    for name, stage in stages.items():
        for key in stage["params"]:
            _get(params, key)  # KeyError names the missing key


TRAIN_KEYS = ["train.epochs", "train.batch_size", "train.lr", "train.weight_decay", "train.device", "train.threads",
              "train.nproc", "train.precision"]


def test_params_are_scoped(stages):
    params = yaml.safe_load(PARAMS.read_text())
    for exp in params["experiments"]:
        for seed in params["train"]["seeds"]:
            assert sorted(stages[f"train@{exp}-{seed}"]["params"]) == sorted(["profile", f"experiments.{exp}",
                                                                              *TRAIN_KEYS])
            assert stages[f"attack@{exp}-{seed}"]["params"] == ["profile", f"experiments.{exp}.dataset", "attack"]
            assert stages[f"train@{exp}-{seed}"]["outs"] == [f"models/{exp}/s{seed}", f"dvclive/train/{exp}/s{seed}"]
    assert sorted(params["train"]) == sorted([k.split(".")[1] for k in TRAIN_KEYS] + ["seeds"])  # seeds: no train dep
    for name, stage in stages.items():
        assert not name.startswith(("fetch", "masks", "train")) or "attack" not in stage["params"]
        assert "params.yaml" not in stage["params"]


# stage -> the sections of the selected profile it reads (the profile overlays params.yaml)
PROFILE_SECTIONS = {"fetch": ["data"], "masks": ["masks"], "features": ["features", "data"],
                    "train": ["experiments", "train"], "attack": ["attack"], "detector": ["detectors", "train"],
                    "detect": ["detectors", "attack"], "metrics": ["experiments", "detectors", "claims"],  # and train.seeds, from params.yaml
                    "report": ["data", "experiments", "train"]}


def test_every_stage_tracks_the_selected_profile(stages):
    """`dvc exp run -S profile=full` re-runs everything; an edit of one profile section re-runs only its readers."""
    profile = yaml.safe_load(PARAMS.read_text())["profile"]
    stages = dict(stages)
    assert stages.pop("code")["params"] == []  # hashes the code, reads no params
    for name, stage in stages.items():
        assert "profile" in stage["params"], name
        assert stage["profile"] == {f"profiles/{profile}.yaml": PROFILE_SECTIONS[name.split("@")[0]]}, name


def test_only_cheap_outputs_skip_the_cache(stages):
    for name, stage in stages.items():
        if not all(stage["cache"]):
            assert name in ("code", "metrics", "report"), f"{name}: cache: false outputs cost the run-cache"


def test_every_section_parses_strictly():
    params = yaml.safe_load(PARAMS.read_text())
    load_section(PARAMS, "attack", AttackConfig)
    load_section(PARAMS, "train", TrainConfig)
    for dataset, gen in _generators().items():
        build(gen.config, params["data"][dataset], f"params.yaml: data.{dataset}")
        load_section(PARAMS, f"masks.{dataset}", PREPARERS[dataset][0])
    build(VideoDataConfig, params["data"]["video"], "params.yaml: data.video")
    load_section(PARAMS, "features", FeaturesConfig)
    for name, values in params["experiments"].items():
        parse_experiment(name, values, f"params.yaml: experiments.{name}")


def test_no_experiment_is_named_in_dvc_yaml_or_the_profiles():
    """An experiment is one entry in params.yaml: plots read long tables with an `experiment`
    column (training curves too: metrics gathers dvclive's files) and profiles shrink experiments by rule."""
    from attnrobust.metrics.aggregate import CURVES

    experiments = yaml.safe_load(PARAMS.read_text())["experiments"]
    texts = [(ROOT / "dvc.yaml").read_text(), *(p.read_text() for p in (ROOT / "profiles").glob("*.yaml"))]
    for name in experiments:
        assert not any(re.search(rf"(?<![=\w]){name}\b", text) for text in texts), name  # model=<m> is a rule
    plotted = {next(iter(p)) for p in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]}
    assert {f"metrics/plots/{name}.csv" for name in CURVES} <= plotted
