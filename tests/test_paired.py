"""Paired statistics behind every claim's verdict (metrics/paired.py, claims_base.test_paper)."""
import numpy as np
import pytest

from attnrobust.metrics.claims_base import comparison, run_paper_tests
from attnrobust.metrics.paired import compare, holm, mcnemar_exact, verdicts


def _outcomes(p, n=200, seed=0):
    return np.random.default_rng(seed).random(n) < p


def test_exact_mcnemar_needs_more_than_five_discordant_samples():
    """Five samples all one way is p = 0.0625: a gain of 5 samples cannot reach 0.05."""
    a, b = np.array([1] * 5 + [0] * 95, bool), np.zeros(100, bool)
    assert mcnemar_exact(a, b) == pytest.approx(2 / 2 ** 5)
    assert mcnemar_exact(np.r_[a, [True]], np.zeros(101, bool)) == pytest.approx(2 / 2 ** 6)
    assert mcnemar_exact(a, a) == 1.0


def test_compare_gives_effect_interval_and_p_and_is_seeded():
    a, b = _outcomes(0.6), _outcomes(0.4, seed=1)
    c = compare(a, b)
    assert c.effect == pytest.approx(a.mean() - b.mean()) and c.ci[0] < c.effect < c.ci[1] and c.p < 0.01
    assert compare(a, b) == c  # same resamples every time
    assert compare(a, b, threshold=0.6).p < 0.01 and compare(a, b, threshold=c.effect).p > 0.5


def _seeds(gaps, n=300, base=0.4):
    """(k, n) outcomes of a and b whose seed pairs differ by ``gaps`` in accuracy (exactly)."""
    a, b = [], []
    for s, gap in enumerate(gaps):
        b.append(np.arange(n) < base * n)
        a.append(np.roll(np.arange(n) < (base + gap) * n, 7 * s))  # a different subset of samples per seed
    return np.array(a), np.array(b)


def test_training_noise_counts_seeds_that_disagree_leave_the_claim_open():
    """The bootstrap resamples seed pairs as well as samples: three seeds with +0.3, +0.3, -0.3 pool to
    +0.1 on 900 paired outcomes, which the stratified McNemar test alone calls significant, but one
    seed in three goes the other way, so across training runs the sign is not established."""
    a, b = _seeds([0.3, 0.3, -0.3])
    assert mcnemar_exact(a, b) < 1e-3
    split = compare(a, b)
    assert split.effect == pytest.approx(0.1, abs=0.01) and split.p > 0.05 and split.ci[0] < 0 < split.ci[1]
    agree = compare(*_seeds([0.12, 0.1, 0.08]))  # the same mean, seeds that agree
    assert agree.p < 0.01 and agree.ci[0] > 0
    assert agree.seed_effects == pytest.approx((0.12, 0.1, 0.08), abs=0.01) and split.as_dict()["seed_sd"] > 0.3
    one = compare(a[0], b[0])  # one seed: the bootstrap over samples alone
    assert one.p == pytest.approx(max(mcnemar_exact(a[0], b[0]), 1 / 4000)) and one.ci[0] > 0


def test_holm_is_monotone_and_never_below_the_raw_p():
    raw = [0.01, 0.04, 0.03, 0.2]
    adjusted = holm(raw)
    assert adjusted == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert all(x >= r for x, r in zip(adjusted, raw))


def test_verdicts_hold_contradict_or_stay_inconclusive():
    better, worse, same = compare(_outcomes(0.7), _outcomes(0.3, seed=1)), compare(_outcomes(0.3), _outcomes(0.7, seed=1)), \
        compare(_outcomes(0.5), _outcomes(0.5))
    assert [v for v, _ in verdicts([[better], [worse], [same]])] == ["holds", "contradicted", "inconclusive"]
    assert verdicts([[better, same]])[0][0] == "inconclusive"  # every comparison of a claim must hold


def test_a_claim_is_tested_on_the_same_samples_and_holm_corrected_per_paper():
    ids = [f"s{i}" for i in range(200)]
    summaries = {e: {"per_sample": {"ids": ids, "columns": {"worst_correct": _outcomes(p, seed=k).astype(int)}}}
                 for k, (e, p) in enumerate({"def": 0.7, "base": 0.3, "twin": 0.3}.items())}
    claims = [{"claim": "c1", "holds": True, "comparisons": [comparison("def", "base", "worst_correct", 0.0, "A")]},
              {"claim": "c2", "holds": False, "comparisons": [comparison("twin", "base", "worst_correct", 0.0, "A")]},
              {"claim": "c3", "holds": True}]
    out = run_paper_tests(summaries, claims)
    assert [c["verdict"] for c in out] == ["holds", "inconclusive", "inconclusive"]
    assert out[0]["tests"][0]["n"] == 200 and out[0]["p_holm"] >= out[0]["tests"][0]["p"]
    assert out[2]["untested"] and out[2]["p_holm"] is None and out[2]["direction"] is True
    summaries["base"]["per_sample"]["ids"] = ids[::-1]
    with pytest.raises(Exception, match="different samples"):
        run_paper_tests(summaries, claims[:1])


def test_better_somewhere_worse_nowhere_versus_at_least_as_good_everywhere():
    from attnrobust.metrics.paired import claim_p

    gain, tie = compare(_outcomes(0.7), _outcomes(0.3, seed=1)), compare(_outcomes(0.0), _outcomes(0.0))
    assert claim_p([gain, tie], "any")[1] is True and claim_p([gain, tie], "any")[0] == pytest.approx(min(1, 2 * gain.p))
    assert claim_p([gain, tie], "all") == (1.0, False)  # a tie at one budget: not better at every budget
    loss = compare(_outcomes(0.3), _outcomes(0.7, seed=1))
    assert claim_p([gain, loss], "any")[1] is False  # significantly worse at one budget speaks against it


def _videos(n: int = 60, c: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, c), np.int8)
    for i in range(n):
        labels[i, rng.choice(c, size=3, replace=False)] = 1
    noise = rng.random((n, c)).astype(np.float32)
    return labels, noise


def test_gap_comparison_bootstraps_the_same_videos_for_both_models(monkeypatch):
    from attnrobust.metrics import paired
    from attnrobust.metrics.multilabel import gap_at_k
    from attnrobust.metrics.paired import compare_gap

    monkeypatch.setattr(paired, "BOOTSTRAP_GAP", 250)

    labels, noise = _videos()
    good = (0.6 * labels + 0.4 * noise).astype(np.float32)  # labels ranked high: GAP near 1
    bad = noise  # random ranking
    result = compare_gap(good, bad, labels)
    assert result.effect == pytest.approx(gap_at_k(good, labels) - gap_at_k(bad, labels))
    assert result.ci[0] > 0 and result.p < 0.01 and result.n == 60
    same = compare_gap(good, good, labels)  # the same scores: every resample's difference is exactly 0
    assert same.effect == 0.0 and same.ci == (0.0, 0.0) and same.p == 1.0
    assert compare_gap(good, bad, labels).as_dict() == result.as_dict()  # seeded


def test_a_art_claims_are_decided_by_the_gap_bootstrap_over_videos(monkeypatch):
    from attnrobust.metrics import paired
    from attnrobust.metrics.claims import evaluate_claims

    monkeypatch.setattr(paired, "BOOTSTRAP_GAP", 250)  # the verdict logic, at a quarter of the resamples

    labels, noise = _videos()
    ids = [f"v{i}" for i in range(len(labels))]

    def video(mix: float) -> dict:  # more label in the scores = higher GAP under attack
        scores = (mix * labels + (1 - mix) * noise).astype(np.float32)
        return {"n": len(labels), "unreliable": False, "clean_gap": 0.9, "pgd_gap": mix, "per_sample": None,
                "scores": {"ids": ids, "labels": labels, "worst_scores": scores}}

    summaries = {"a": video(0.6), "at": video(0.3), "plain": video(0.0), "noreg": video(0.6)}
    config = {"a_art": [{"a_art": "a", "pgd_at": "at", "plain": "plain", "noreg": "noreg"}]}
    ranked, regulariser = evaluate_claims(summaries, config).values()
    assert ranked["verdict"] == "holds" and len(ranked["tests"]) == 2 and ranked["p_holm"] < 0.05
    assert regulariser["verdict"] == "inconclusive"  # identical scores with and without: nothing to decide
    summaries["a"], summaries["noreg"] = video(0.1), video(0.6)  # the ablation is better: contradicted
    _, regulariser = evaluate_claims(summaries, config).values()
    assert regulariser["verdict"] == "contradicted"


def test_auroc_comparison_tests_the_threshold_on_resampled_samples():
    from attnrobust.metrics.detection import auroc
    from attnrobust.metrics.paired import compare_auroc

    rng = np.random.default_rng(0)
    n = 200
    clean_ok = rng.random(n) < 0.8
    clean_score = rng.normal(0, 1, n)
    fooled = clean_ok & (rng.random(n) < 0.6)
    separated = rng.normal(3, 1, n)  # fooled inputs score far higher: AUROC ~0.98
    mixed = rng.normal(0.3, 1, n)  # barely higher: AUROC ~0.58
    high = compare_auroc(clean_ok, clean_score, [(fooled, separated)], 0.9)
    assert high.effect == pytest.approx(auroc(separated[fooled], clean_score[clean_ok]))
    assert high.ci[0] > 0.9 and high.p < 0.01 and high.n == n
    low = compare_auroc(clean_ok, clean_score, [(fooled, mixed)], 0.9)
    assert low.ci[1] < 0.9 and low.p < 0.01  # significantly below the bar: the claim is contradicted
    both = compare_auroc(clean_ok, clean_score, [(fooled, separated), (fooled, mixed)], 0.9)
    assert both.effect == pytest.approx((high.effect + low.effect) / 2)  # the mean over conditions
    with pytest.raises(ValueError):
        compare_auroc(clean_ok, clean_score, [(np.zeros(n, bool), separated)], 0.9)  # no positive at all


def test_detector_claims_are_decided_by_the_auroc_bootstrap():
    from attnrobust.metrics.claims import evaluate_claims

    rng = np.random.default_rng(1)
    n = 200
    clean_ok = rng.random(n) < 0.8
    fooled = clean_ok & (rng.random(n) < 0.6)
    clean_score = rng.normal(0, 1, n)
    scores = {"clean_correct": clean_ok, "clean_score": clean_score,
              **{f"{c}:fooled": fooled for c in ("pgd@8", "pgd_full@8", "adaptive@8", "jpeg@10")},
              "pgd@8:score": rng.normal(3, 1, n), "pgd_full@8:score": rng.normal(3, 1, n),
              "adaptive@8:score": rng.normal(0, 1, n), "jpeg@10:score": rng.normal(0.2, 1, n)}
    row = {"auroc": 0.95, "tpr_at_5fpr": 0.8, "success": 0.1}
    summary = {"detector": "d", "n": n, "eps": 8, "unreliable": False, "detector_scores": scores,
               "attacks": {"pgd": {"8": row}, "pgd_full": {"8": row}},
               "adaptive": {**row, "auroc": 0.5}, "corruptions": {"jpeg": {"10": {**row, "auroc": 0.55}}}}
    pgd, adaptive, corruptions = evaluate_claims({"d": summary}, {"iqa_kd": [{"detector": "d"}]}).values()
    assert pgd["verdict"] == "holds" and len(pgd["tests"]) == 2
    assert adaptive["verdict"] == "contradicted" and corruptions["verdict"] == "contradicted"


def test_ratio_comparison_resamples_the_same_samples_for_both_models():
    from attnrobust.metrics.paired import compare_ratio

    rng = np.random.default_rng(2)
    own = rng.uniform(0.5, 1.5, 200)
    far, near = own * rng.uniform(2.5, 3.5, 200), own * rng.uniform(1.0, 1.4, 200)
    better = compare_ratio(own, far, own, near)
    assert better.effect == pytest.approx(far.mean() / own.mean() - near.mean() / own.mean())
    assert better.ci[0] > 0 and better.p < 0.01
    same = compare_ratio(own, near, own, near)
    assert same.effect == 0.0 and same.p == 1.0


def test_each_comparison_lists_every_training_setting_its_two_runs_differ_in():
    """Compare like with like: the claims carry what the checkpoints say the two runs differ in."""
    from types import SimpleNamespace

    from attnrobust.evaluation import trained_as
    from attnrobust.metrics.claims_base import differences
    from attnrobust.report.markdown import differs_section

    train = {"epochs": 10, "batch_size": 64, "lr": 0.004, "weight_decay": 0.0005, "precision": "auto", "seeds": [0],
             "device": "cpu", "threads": 2, "nproc": 1}
    pgd_at = {"dataset": "video", "method": "pgd_at", "model": "t", "model_args": {}, "train": {}, "train_eps": 6}
    a_art = {**pgd_at, "method": "a_art", "train_eps": 8, "clean_weight": 1.0}
    ids = [f"s{i}" for i in range(200)]
    summaries = {e: {"trained_as": trained_as({"config": c, "train": {**train, "seeds": [k]}}),
                     "per_sample": {"ids": ids, "columns": {"worst_correct": _outcomes(0.5, seed=k).astype(int)}}}
                 for k, (e, c) in enumerate({"a_art": a_art, "pgd_at": pgd_at,
                                             "twin": {**pgd_at, "train": {"epochs": 40}}}.items())}
    summaries["twin"]["trained_as"]["train"]["epochs"] = 40  # its effective train section
    assert differences(summaries, "a_art", "pgd_at") == ["clean_weight: 1.0 vs -", "method: a_art vs pgd_at",
                                                         "train_eps: 8 vs 6"]  # not the seed, device or threads
    assert differences(summaries, "pgd_at", "twin") == ["train.epochs: 10 vs 40"]
    assert differences(summaries, "pgd_at", "pgd_at") == []
    assert differences({**summaries, "old": {}}, "old", "pgd_at") is None  # a summary without the record
    claims = [{"claim": "c", "holds": True, "comparisons": [comparison("a_art", "pgd_at", "worst_correct", 0.0, "A")]}]
    test = run_paper_tests(summaries, claims)[0]["tests"][0]
    assert test["differs"] == ["clean_weight: 1.0 vs -", "method: a_art vs pgd_at", "train_eps: 8 vs 6"]
    text = differs_section(SimpleNamespace(claims={"a_art/0/0": {"tests": [test]}}))
    assert "| a_art/0/0 | A | a_art vs pgd_at | clean_weight: 1.0 vs -; method: a_art vs pgd_at; train_eps: 8 vs 6 |" \
        in text
    assert "re-run" in differs_section(SimpleNamespace(claims={"x/0/0": {"tests": [{"a": "p", "b": "q"}]}}))
