"""End to end: `dvc repro` on the tiny profile in a fresh git repo, then the experiments workflow.

This is the README's workflow: `dvc repro`, a no-op re-run, `dvc exp run -S attack.eps=...`
re-running only attack stages, and `dvc metrics diff`. The tiny profile is profiles/tiny.yaml,
selected with `profile: tiny` (tests/tiny.py), the same mechanism as `dvc exp run -S profile=full`.
"""
import json
import re

import numpy as np
import pytest
import yaml

from tiny import ran_stages, run, tool_env

# one xdist worker runs every test that reads the session's tiny pipeline , so
# each is built once (`make test`: -n 2 --dist loadgroup); a mark added by a collection hook did not
# reach xdist's grouping (both workers built the pipeline)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pipeline")]


@pytest.fixture(scope="module")
def tiny_repo(tiny_pipeline):
    """conftest.py's session-wide tiny pipeline, run from scratch and committed as the baseline."""
    return tiny_pipeline[0], tool_env()


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
    assert {k.split("/")[0] for k in claims} == set(yaml.safe_load((repo / "params.yaml").read_text())["claims"])
    assert all(isinstance(c["direction"], bool) and isinstance(c["unreliable"], bool) and c["paper"] and c["ours"]
               and c["verdict"] in ("holds", "contradicted", "inconclusive") for c in claims.values())
    verdicts = json.loads((repo / "metrics" / "verdicts.json").read_text())
    assert verdicts.keys() == claims.keys() and all(len(str(v)) <= 16 for row in verdicts.values() for v in row.values())
    env = json.loads((repo / "metrics" / "env.json").read_text())  # what produced them, training and evaluation
    assert env["evaluation"]["torch"] == env["training"]["torch"] and env["evaluation"]["precision"] == "fp32"
    assert (repo / "results" / "attack" / "gtsrb_standard" / "s0" / "provenance.json").is_file()
    detection = json.loads((repo / "metrics" / "detection.json").read_text())
    row = detection["gtsrb_iqa_kd"]  # AUROCs are null where the tiny teacher leaves no fooling input
    assert {"pgd_auroc", "adaptive_auroc", "adaptive_success"} <= set(row) and 0 <= row["clean_acc"] <= 1
    assert all(v is None or 0 <= v <= 1 for k, v in row.items() if k.endswith("auroc"))
    assert (repo / "metrics" / "plots" / "roc.csv").is_file()
    with np.load(repo / "results" / "detect" / "gtsrb_iqa_kd" / "s0" / "per_sample.npz") as scores:  # the AUROC tests' input
        assert {"clean_correct", "clean_score", "pgd@8:score", "adaptive@8:fooled"} <= set(scores.files)
    report = (repo / "reports" / "report.md").read_text()
    assert "## Claims" in report and "| paper | claim | paper's number | ours | direction | test | verdict | unreliable |" in report
    for figure in re.findall(r"\]\((figures/[^)]+\.png)\)", report):
        assert (repo / "reports" / figure).is_file(), figure
    curve = (repo / "metrics" / "plots" / "robustness_vs_eps.csv").read_text().splitlines()
    assert curve[0] == "experiment,eps,acc"  # long format: dvc.yaml's plot names no experiment
    assert {row.split(",")[0] for row in curve[1:]} == {n for n, e in experiments.items() if e["dataset"] != "video"}
    assert (repo / "metrics" / "plots" / "gap_vs_eps.csv").is_file() and (repo / "metrics" / "plots" / "race.csv").is_file()
    summary = json.loads((repo / "results" / "attack" / "gtsrb_standard" / "s0" / "summary.json").read_text())
    assert set(summary["sanity"]) >= {"eps_monotone", "whole_box_zero", "nonzero_gradients"}
    assert (repo / "results" / "attack" / "gtsrb_standard" / "s0" / "per_sample.csv").read_text().count("\n") == 17
    assert (repo / "results" / "attack" / "gtsrb_s3ta" / "s0" / "attention.npz").is_file()
    with np.load(repo / "results" / "attack" / "video_a_art" / "s0" / "scores.npz") as scores:  # the GAP claims' input
        assert {"ids", "labels", "worst_scores"} <= set(scores.files) and scores["worst_scores"].ndim == 2
    assert claims["a_art/0/0"]["tests"]  # decided by the GAP bootstrap over videos, not left untested


def test_noop_repro_reruns_nothing(tiny_repo):
    """`dvc exp run -S attack.eps=...` re-running only the attacks is checked on the smaller repos of
    tests/test_dvc_workflows.py (the queue test), where it costs a fifth of this repo's 18 attacks."""
    repo, env = tiny_repo
    assert "Running stage" not in run(["dvc", "repro"], repo, env)
    assert run(["git", "status", "--porcelain"], repo, env) == ""  # the fixture committed every output DVC writes


def test_experiment_param_retrains_only_that_experiment_and_the_tools_show_it(tiny_repo):
    """The rest of the README's workflow: a training param re-trains one experiment; `dvc exp show`
    lists the experiments and `dvc plots diff` renders the curves against the baseline commit."""
    repo, env = tiny_repo
    ran = ran_stages(run(["dvc", "exp", "run", "-S", "experiments.gtsrb_pgd_at.train_eps=4"], repo, env))
    assert ran == {"train@gtsrb_pgd_at-0", "attack@gtsrb_pgd_at-0", "metrics", "report"}
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo, env))
    assert sum(len(row.get("experiments") or []) for row in shown) == 1  # this run, on the baseline
    diff = json.loads(run(["dvc", "metrics", "diff", "HEAD", "--json"], repo, env)).get("metrics/robustness.json", {})
    assert {key.split(".")[0] for key in diff} <= {"gtsrb_pgd_at"}  # only the retrained experiment can move
    plots = json.loads(run(["dvc", "plots", "diff", "HEAD", "--json"], repo, env))
    assert {f"metrics/plots/{name}.csv" for name in ("robustness_vs_eps", "gap_vs_eps", "roc", "race", "training_loss",
                                                     "training_clean_acc")} <= set(plots["data"])
    assert not plots.get("errors"), plots.get("errors")  # every plot file is one DVC can read
