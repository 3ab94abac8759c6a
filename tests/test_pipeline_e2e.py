"""End to end: `dvc repro` on a tiny profile in a fresh git repo, then the experiments workflow.

This is the README's workflow: `dvc repro`, a no-op re-run, `dvc exp run -S attack.eps=...`
re-running only attack stages, and `dvc metrics diff`.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

pytestmark = pytest.mark.slow

TINY = {
    "data": {"gtsrb": {"train_per_class": 3, "test_per_class": 1, "min_size": 20, "max_size": 32},
             "coco": {"train_images": 40, "val_images": 16, "image_size": 48, "max_objects": 3},
             "video": {"synthetic": {"num_classes": 3, "clips_per_class": 6, "frames": 24}}},
    "features": {"dim": 16, "image_size": 32, "max_frames": 6},
    "masks": {"gtsrb": {"image_size": 16}, "coco": {"image_size": 16}},
    "train": {"epochs": 1, "batch_size": 32},
    "attack": {"n_samples": 16, "steps": 2, "eps_sweep": [4], "steps_sweep": [1], "race_glances": [1, 2],
               "race_steps": [2], "race_samples": 8},
}
TINY_MODEL_ARGS = {"cnn": {"width": 4}, "masked_cnn": {"width": 4}, "s3ta": {"width": 4, "glances": 2},
                   "video_transformer": {"d_model": 8, "heads": 2, "layers": 1}}


def _merge(base: dict, over: dict) -> dict:
    for k, v in over.items():
        base[k] = _merge(base[k], v) if isinstance(v, dict) else v
    return base


def _run(args, cwd, env):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("e2e")
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / name, repo / name)
    for name in ("stages", "src"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (repo / ".dvc").mkdir()
    shutil.copy(ROOT / ".dvc" / "config", repo / ".dvc" / "config")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for exp in params["experiments"].values():
        exp["model_args"] = TINY_MODEL_ARGS[exp["model"]]
        exp["train"] = {"epochs": 1, "batch_size": 32}
    (repo / "params.yaml").write_text(yaml.safe_dump(_merge(params, TINY), sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    _run(["git", "init", "-q", "-b", "main"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "tiny"], repo, env)
    _run(["dvc", "repro"], repo, env)
    return repo, env


def test_repro_writes_metrics_for_every_experiment(tiny_repo):
    repo, _ = tiny_repo
    metrics = json.loads((repo / "metrics" / "robustness.json").read_text())
    experiments = yaml.safe_load((repo / "params.yaml").read_text())["experiments"]
    assert set(metrics) == set(experiments)
    for name, row in metrics.items():
        prefix = "gap" if experiments[name]["dataset"] == "video" else "acc"
        assert 0 <= row[f"robust_{prefix}"] <= row[f"pgd_{prefix}"] <= 1 and 0 <= row[f"clean_{prefix}"] <= 1
        assert row["eps"] == 8 and isinstance(row["unreliable"], bool)
    claims = json.loads((repo / "metrics" / "claims.json").read_text())
    assert {k.split("/")[0] for k in claims} == {"fgmask", "s3ta", "a_art"}
    assert all(isinstance(c["holds"], bool) and c["paper"] and c["ours"] for c in claims.values())
    curve = (repo / "metrics" / "plots" / "robustness_vs_eps.csv").read_text().splitlines()
    assert curve[0].split(",") == ["eps", *[n for n, e in experiments.items() if e["dataset"] != "video"]]
    assert (repo / "metrics" / "plots" / "gap_vs_eps.csv").is_file() and (repo / "metrics" / "plots" / "race.csv").is_file()
    summary = json.loads((repo / "results" / "attack" / "gtsrb_standard" / "summary.json").read_text())
    assert set(summary["sanity"]) >= {"eps_monotone", "whole_box_zero", "nonzero_gradients"}
    assert (repo / "results" / "attack" / "gtsrb_standard" / "per_sample.csv").read_text().count("\n") == 17
    assert (repo / "results" / "attack" / "gtsrb_s3ta" / "attention.npz").is_file()


def test_noop_repro_and_eps_experiment_rerun_only_attacks(tiny_repo):
    repo, env = tiny_repo
    assert "Running stage" not in _run(["dvc", "repro"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "baseline"], repo, env)
    out = _run(["dvc", "exp", "run", "-S", "attack.eps=4"], repo, env)
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {f"attack@{e}" for e in yaml.safe_load((repo / "params.yaml").read_text())["experiments"]} | {
        "metrics"}
    diff = json.loads(_run(["dvc", "metrics", "diff", "HEAD", "--json"], repo, env))
    changed = diff["metrics/robustness.json"]
    assert changed["gtsrb_standard.eps"] == {"old": 8, "new": 4, "diff": -4}
