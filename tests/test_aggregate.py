"""Plot tables in long format (one `experiment` column, so dvc.yaml never names an experiment), and
the pooling of every experiment's seeds (results/attack/<exp>/s<seed>/)."""
import csv
import json

import numpy as np
import pytest

from attnrobust.errors import UserError
from attnrobust.metrics.aggregate import (headline_metrics, pool_summaries, read_clean_test, read_per_sample,
                                         read_scores, read_summaries, write_curve, write_training_curves)
from attnrobust.metrics.claims_base import clean_comparison, comparison, run_comparison
from attnrobust.metrics.paired import compare, mcnemar_exact
from attnrobust.report.inputs import read_curve


def test_curve_tables_are_long_and_read_back_per_experiment(tmp_path):
    summaries = {"a": {"curves": {"eps": [0, 8], "eps_acc": [0.9, 0.1]}},
                 "b": {"curves": {"eps": [0, 4], "eps_acc": [0.8, 0.5]}},
                 "v": {"curves": {"eps": [0, 8], "eps_gap": [0.7, 0.2]}}}  # video: another table
    write_curve(tmp_path / "c.csv", summaries, "eps", "eps_acc")
    rows = list(csv.reader(open(tmp_path / "c.csv")))
    assert rows[0] == ["experiment", "eps", "acc"] and {r[0] for r in rows[1:]} == {"a", "b"}
    curve = read_curve(tmp_path / "c.csv")
    assert curve.x_name == "eps" and curve.x == [0, 4, 8]
    assert curve.series["a"][0] == 0.9 and curve.series["a"][2] == 0.1 and curve.series["a"][1] != curve.series["a"][1]


def test_training_curves_gather_every_experiments_dvclive_files_averaging_seeds(tmp_path):
    for exp, seed, losses in (("a", 0, [2.0, 1.0]), ("a", 1, [4.0, 2.0]), ("b", 0, [3.0])):
        folder = tmp_path / "live" / exp / f"s{seed}" / "plots" / "metrics" / "train"
        folder.mkdir(parents=True)
        (folder / "loss.tsv").write_text("step\tloss\n" + "".join(f"{i + 1}\t{v}\n" for i, v in enumerate(losses)))
    written = write_training_curves(tmp_path, tmp_path / "live", ["a", "b", "missing"], [0, 1])
    assert [p.name for p in written] == ["training_loss.csv"]  # no clean-accuracy files: no table
    assert list(csv.reader(open(written[0]))) == [["experiment", "step", "loss"], ["a", "1", "3"], ["a", "2", "1.5"],
                                                 ["b", "1", "3"]]


def _seed_results(root, exp, seed, robust, clean_acc, passed=True, ids=None):
    folder = root / exp / f"s{seed}"
    folder.mkdir(parents=True)
    ids = ids or [str(i) for i in range(len(robust))]
    summary = {"clean_acc": clean_acc, "robust_acc": float(np.mean(robust)), "eps": 8, "steps": 10, "n": len(robust),
               "unreliable": not passed, "sanity": {"check": {"passed": passed, "value": clean_acc}},
               "curves": {"eps": [0, 8], "eps_acc": [clean_acc, float(np.mean(robust))]}}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "per_sample.csv").write_text("id,robust\n" + "".join(f"{i},{r}\n" for i, r in zip(ids, robust)))
    np.savez(folder / "scores.npz", ids=np.array(ids), labels=np.eye(2)[np.arange(len(robust)) % 2],
             latent_own=np.full(len(robust), 1.0 + seed))


def test_two_seeds_pool_into_means_sds_and_a_stratified_paired_test(tmp_path):
    rng = np.random.default_rng(0)
    n = 60
    outcomes = {("a", 0): rng.random(n) < 0.7, ("a", 1): rng.random(n) < 0.6,
                ("b", 0): rng.random(n) < 0.4, ("b", 1): rng.random(n) < 0.5}
    for (exp, seed), robust in outcomes.items():
        _seed_results(tmp_path, exp, seed, robust.astype(int), clean_acc=0.8 + 0.1 * seed, passed=(exp, seed) != ("b", 1))
    summaries = read_summaries(tmp_path, ["a", "b"], [0, 1])
    a, b = summaries["a"], summaries["b"]
    assert a["clean_acc"] == pytest.approx(0.85) and a["seeds"] == [0, 1] and len(a["per_seed"]) == 2
    assert a["curves"]["eps_acc"][1] == pytest.approx((outcomes["a", 0].mean() + outcomes["a", 1].mean()) / 2)
    assert a["sanity"]["check"]["passed"] and not b["sanity"]["check"]["passed"]  # one failing seed fails the pool
    assert not a["unreliable"] and b["unreliable"]
    row = headline_metrics(summaries)["a"]
    assert row["seeds"] == 2 and row["clean_acc_seed_sd"] == pytest.approx(np.std([0.8, 0.9], ddof=1), abs=1e-4)

    per_sample = {e: read_per_sample(tmp_path, e, [0, 1]) for e in ("a", "b")}
    assert per_sample["a"]["columns"]["robust"].shape == (2, n)
    scores = read_scores(tmp_path, "a", [0, 1])
    assert scores["latent_own"].shape == (2, n) and scores["labels"].shape == (n, 2)
    test = run_comparison({e: {"per_sample": per_sample[e]} for e in ("a", "b")}, comparison("a", "b", "robust", 0, "x"))
    pooled_a = np.stack([outcomes["a", 0], outcomes["a", 1]])
    pooled_b = np.stack([outcomes["b", 0], outcomes["b", 1]])
    assert test["effect"] == pytest.approx(pooled_a.mean() - pooled_b.mean(), abs=1e-4)
    assert test["seeds"] == 2 and test["n"] == n
    assert test["seed_effects"] == [round(float(outcomes["a", s].mean() - outcomes["b", s].mean()), 4) for s in (0, 1)]
    # never below the stratified exact McNemar test (the discordant pairs of both seeds pooled), and
    # above it here: the two seeds' effects (+0.30, +0.07) disagree, which the seed bootstrap sees
    assert test["p"] > float(f"{mcnemar_exact(pooled_a.ravel(), pooled_b.ravel()):.3g}")
    assert test["ci_low"] < test["effect"] < test["ci_high"]


def test_a_clean_claim_pairs_every_test_image_over_seeds(tmp_path):
    """attack@'s clean_test.npz (clean outcomes on the whole test split) pools over seeds like
    per_sample.csv, and a clean comparison tests those, n = the test split, not the attacked subset."""
    rng = np.random.default_rng(2)
    n, ids = 250, [f"img{i}" for i in range(250)]
    outcomes = {(e, s): rng.random(n) < p for e, p in (("a", 0.6), ("b", 0.45)) for s in (0, 1)}
    for (exp, seed), correct in outcomes.items():
        folder = tmp_path / exp / f"s{seed}"
        folder.mkdir(parents=True)
        np.savez(folder / "clean_test.npz", ids=np.array(ids), correct=correct)
    found = {e: read_clean_test(tmp_path, e, [0, 1]) for e in ("a", "b")}
    assert found["a"]["ids"] == ids and found["a"]["correct"].shape == (2, n)
    test = run_comparison({e: {"clean_test": found[e]} for e in found}, clean_comparison("a", "b", 0.0, "clean"))
    pooled = {e: np.stack([outcomes[e, 0], outcomes[e, 1]]) for e in ("a", "b")}
    assert test["n"] == n and test["seeds"] == 2
    assert test["effect"] == pytest.approx(pooled["a"].mean() - pooled["b"].mean(), abs=1e-4)
    assert read_clean_test(tmp_path, "missing", [0]) is None
    with pytest.raises(UserError, match="clean_test.npz"):
        run_comparison({"a": {"clean_test": found["a"]}, "b": {"clean_test": None}},
                       clean_comparison("a", "b", 0.0, "clean"))
    np.savez(tmp_path / "a" / "s1" / "clean_test.npz", ids=np.array(ids[::-1]), correct=outcomes["a", 1])
    with pytest.raises(UserError, match="different samples"):
        read_clean_test(tmp_path, "a", [0, 1])


def test_pooling_two_seeds_narrows_the_interval_of_a_real_effect():
    rng = np.random.default_rng(1)
    a, b = rng.random((2, 100)) < 0.65, rng.random((2, 100)) < 0.5
    one, two = compare(a[0], b[0]), compare(a, b)
    assert two.ci[1] - two.ci[0] < one.ci[1] - one.ci[0]
    assert one.seed_effects == (pytest.approx(a[0].mean() - b[0].mean()),)


def test_seeds_attacked_on_different_samples_are_an_error(tmp_path):
    _seed_results(tmp_path, "a", 0, [1, 0, 1], 0.8)
    _seed_results(tmp_path, "a", 1, [1, 0, 1], 0.8, ids=["x", "y", "z"])
    with pytest.raises(UserError, match="different samples"):
        read_per_sample(tmp_path, "a", [0, 1])


def test_a_missing_seed_names_its_stage(tmp_path):
    _seed_results(tmp_path, "a", 0, [1, 0], 0.8)
    with pytest.raises(UserError, match=r"attack@a-1"):
        read_summaries(tmp_path, ["a"], [0, 1])


def test_pool_summaries_rules():
    pooled = pool_summaries([{"x": 1, "t": "a", "f": False, "l": [1.0, 2.0], "none": None, "k": {"passed": True}},
                             {"x": 3, "t": "b", "f": True, "l": [3.0, 4.0], "none": 2.0, "k": {"passed": False}}])
    assert pooled == {"x": 2.0, "t": "a", "f": True, "l": [2.0, 3.0], "none": 2.0, "k": {"passed": False}}
