"""S3TA: spatial basis, attention maps, gradient flow, test-time glances, the race grid and claims."""
import math

import numpy as np
import pytest
import torch

from attnrobust.evaluation import evaluate_checkpoint
from attnrobust.attacks.race import race_sanity, race_step_size, run_race, with_glances
from attnrobust.attacks.suite import AttackConfig
from attnrobust.checkpoint import load_model
from attnrobust.errors import UserError
from attnrobust.experiment import parse_experiment
from attnrobust.metrics.aggregate import write_race
from attnrobust.metrics.claims_s3ta import s3ta_claims
from attnrobust.models import build_model
from attnrobust.models.s3ta import spatial_basis
from attnrobust.training import TrainConfig, train_experiment

KW = {"num_classes": 5, "mean": [0.5] * 3, "std": [0.25] * 3}


def _model(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("s3ta", **KW, **{"width": 4, "key_dim": 4, "value_dim": 4, "hidden": 16, **kw}).eval()


def _cfg(**kw) -> AttackConfig:
    return AttackConfig(**{"eps": 8, "steps": 2, "n_samples": 0, "batch_size": 16, "eps_sweep": [8],
                           "steps_sweep": [1, 2], "race_glances": [1, 3], "race_steps": [1, 3],
                           "race_samples": 12, "attention_examples": 3, "device": "cpu", **kw})


def test_spatial_basis_has_the_stated_shape_and_values():
    basis = spatial_basis(6, 4, 3)
    assert basis.shape == (9, 6, 4)  # (U², h, w)
    for u in range(1, 4):
        for v in range(1, 4):
            for i, j in [(0, 0), (1, 2), (5, 3)]:
                expected = math.cos(math.pi * u * i / 6) * math.cos(math.pi * v * j / 4)
                assert basis[(u - 1) * 3 + (v - 1), i, j].item() == pytest.approx(expected, abs=1e-6)
    assert torch.equal(basis[:, 0, 0], torch.ones(9))  # cos(0) * cos(0)


@pytest.mark.parametrize("heads", [1, 2])
def test_attention_maps_are_distributions_over_positions(heads):
    logits, maps = _model(heads=heads, glances=3).forward_with_attention(torch.rand(4, 3, 32, 32))
    assert logits.shape == (4, 5) and maps.shape == (4, 3, heads, 8, 8)  # (B, glances, heads, H/4, W/4)
    assert (maps >= 0).all()
    assert torch.allclose(maps.sum(dim=(-2, -1)), torch.ones(4, 3, heads), atol=1e-5)


@pytest.mark.parametrize("readout", ["last", "mean"])
def test_gradients_reach_the_input_through_every_glance(readout):
    model = _model(glances=4, readout=readout)
    answers = []
    model.core.register_forward_hook(lambda mod, inp, out: answers.append(inp[0]))
    x = torch.rand(3, 3, 32, 32, requires_grad=True)
    logits = model(x)
    for a in answers:
        a.retain_grad()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    assert len(answers) == 4
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in answers)  # each glance's answer matters
    assert torch.isfinite(x.grad).all() and (x.grad.abs().flatten(1).sum(1) > 0).all()


def test_glances_change_at_test_time_without_retraining():
    model = _model(glances=4)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(2, 3, 32, 32)
    with with_glances(model, 8):
        logits8, maps8 = model.forward_with_attention(x)
    assert model.glances == 4  # restored
    _, maps2 = _model(glances=2).forward_with_attention(x)
    assert logits8.shape == (2, 5) and maps8.shape[1] == 8
    assert torch.allclose(maps8[:, :2], maps2, atol=1e-6)  # unrolling is causal: same first glances
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())  # nothing new to learn
    with pytest.raises(ValueError):
        with with_glances(model, 0):
            pass


def test_bad_model_args_are_user_errors():
    with pytest.raises(UserError, match="bad model_args"):
        build_model("s3ta", **KW, readout="max")
    with pytest.raises(UserError, match="bad model_args"):
        build_model("s3ta", **KW, glances=0)
    with pytest.raises(UserError, match="bad model_args"):
        build_model("s3ta", **KW, temperature="softmax")
    with pytest.raises(UserError, match="bad model_args"):
        build_model("s3ta", **KW, temperature="cosine", cosine_scale=0)
    with pytest.raises(UserError, match="bad model_args"):
        build_model("s3ta", **KW, initial_state="image")


def test_values_read_every_trunk_channel_by_default():
    model = build_model("s3ta", **KW, width=4, heads=3)
    assert model.values.out_channels == model.trunk.out_channels == 16  # no 4w -> 16 bottleneck
    assert model.core.input_size == 3 * (16 + 64)  # heads * (values + basis)
    assert build_model("s3ta", **KW, width=4, value_dim=8).values.out_channels == 8


def test_temperature_scales_the_attention_logits():
    x = torch.rand(3, 3, 32, 32)
    plain, scaled = _model(temperature="none"), _model(temperature="sqrt")
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in scaled.state_dict().items()}
    maps_plain = plain.forward_with_attention(x)[1][:, 0]  # glance 1: same (constant) queries in both models
    maps_scaled = scaled.forward_with_attention(x)[1][:, 0]
    expected = torch.softmax(maps_plain.flatten(2).log() / math.sqrt(plain.query_dim), dim=-1)  # shift-invariant
    assert torch.allclose(maps_scaled.flatten(2), expected, atol=1e-5)
    learned = _model(temperature="learned")
    assert torch.allclose(learned.log_scale.exp(), torch.full((2, 1), 1 / math.sqrt(learned.query_dim)))
    torch.nn.functional.cross_entropy(learned(x), torch.tensor([0, 1, 2])).backward()
    assert learned.log_scale.grad is not None and learned.log_scale.grad.abs().sum() > 0


def test_cosine_attention_bounds_the_logits_and_keys_can_leave_out_the_basis():
    """temperature "cosine": queries and keys are unit vectors, so a map's logits lie within
    +-cosine_scale of each other and a map can never be more peaked than that allows;
    key_basis=False: the keys are the image's features only (the basis stays in the values)."""
    x = torch.rand(4, 3, 32, 32)
    model = _model(temperature="cosine", cosine_scale=3.0)
    logits = model.forward_with_attention(x)[1].flatten(3).log()  # log-softmax = logits - logsumexp
    assert float((logits.amax(-1) - logits.amin(-1)).max()) <= 2 * 3.0 + 1e-4
    assert torch.allclose(model.log_scale.exp(), torch.full((2, 1), 3.0))
    content = _model(key_basis=False)
    assert content.query_dim == 4 and content.core.input_size == 2 * (4 + 64)  # values keep the basis
    maps = content.forward_with_attention(x)[1]
    assert maps.shape == (4, 4, 2, 8, 8) and torch.allclose(maps.sum(dim=(-1, -2)), torch.ones(4, 4, 2))
    torch.nn.functional.cross_entropy(content(x), torch.tensor([0, 1, 2, 3])).backward()
    assert content.keys.weight.grad.abs().sum() > 0


def test_map_variation_is_zero_for_one_map_everywhere_and_one_for_disjoint_maps():
    from attnrobust.metrics.attention import map_shift, map_variation, peak_mass

    same = torch.zeros(3, 2, 1, 2, 2)
    same[..., 0, 0] = 1.0  # every image, every glance: all weight on cell (0, 0)
    assert map_variation(same) == [0.0, 0.0] and peak_mass(same) == [1.0, 1.0]
    disjoint = torch.zeros(3, 1, 1, 2, 2)
    for i in range(3):
        disjoint[i, 0, 0].view(-1)[i] = 1.0  # image i on cell i
    assert map_variation(disjoint) == [1.0] and map_shift(disjoint, disjoint) == [0.0]
    half = torch.zeros(2, 1, 1, 1, 2)
    half[0, ..., 0], half[1, ..., :] = 1.0, 0.5  # (1, 0) vs (0.5, 0.5): TV 0.5
    assert map_variation(half) == [0.5] and map_shift(half, half.flip(0)) == [0.5]
    uniform = torch.full((2, 1, 2, 4, 4), 1 / 16)
    assert peak_mass(uniform) == [1 / 16]
    with pytest.raises(ValueError, match="two images"):
        map_variation(uniform[:1])


def test_initial_state_zeros_or_learned():
    x = torch.rand(2, 3, 32, 32)
    assert "initial" not in _model().state_dict()  # zeros: a buffer, not saved, as before the option existed
    learned = _model(initial_state="learned")
    assert torch.allclose(learned(x), _model()(x), atol=1e-6)  # learned h0, c0 start at zero
    torch.nn.functional.cross_entropy(learned(x), torch.tensor([0, 1])).backward()
    assert learned.initial.grad is not None and learned.initial.grad.abs().sum() > 0


def test_attention_depends_on_the_image_through_the_keys():
    x = torch.rand(6, 3, 32, 32)
    model = _model(glances=3)
    with torch.no_grad():
        maps = model.forward_with_attention(x)[1].flatten(3)  # (B, glances, heads, hw)
        tv = 0.5 * (maps[:, None] - maps[None]).abs().sum(-1)  # (B, B, glances, heads)
        off_diagonal = ~torch.eye(6, dtype=torch.bool)
        assert (tv[off_diagonal] > 1e-4).all()  # every glance and head: different images, different maps
        assert torch.allclose(model.forward_with_attention(x.flip(0))[1].flatten(3), maps.flip(0), atol=1e-6)
        model.keys.weight.zero_()
        model.keys.bias.zero_()  # keys = the spatial basis only
        first = model.forward_with_attention(x)[1][:, 0]
    assert torch.allclose(first, first[:1].expand_as(first), atol=1e-6)  # constant first query: a fixed map


def test_race_step_size_follows_xie_et_al():
    assert race_step_size(16, 10, 1.0) == pytest.approx(1.6)  # 10 steps: eps / 10
    assert race_step_size(16, 100, 1.0) == 1.0


def test_race_at_zero_budget_is_clean_accuracy_per_glances():
    model = _model(glances=2)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(12, 3, 32, 32, generator=g), torch.randint(0, 5, (12,), generator=g)
    race, attention = run_race(model, x, y, _cfg(eps=0), num_classes=5, device="cpu")
    assert race["glances"] == [1, 3] and race["steps"] == [1, 3] and race["trained_glances"] == 2
    for g_i, row in zip(race["glances"], race["acc"]):
        with with_glances(model, g_i), torch.no_grad():
            clean = float((model(x).argmax(1) == y).float().mean())
        assert row == [pytest.approx(clean, abs=1e-4)] * 2
    assert race["transfer_acc"] == race["worst_acc"] == race["acc"]  # eps 0: every attack is the clean input
    assert [[float(np.mean(c)) for c in row] for row in race["worst_correct"]] == race["worst_acc"]  # per sample
    assert model.glances == 2
    assert attention["attention_clean"].shape == (3, 2, 2, 8, 8)  # (k, trained glances, heads, h, w)
    assert np.allclose(attention["attention_adv"].sum(axis=(-2, -1)), 1, atol=1e-5)
    assert np.array_equal(attention["x_adv"], attention["x_clean"])  # eps 0: nothing moves
    with torch.no_grad():  # how much the maps depend on the input, on all 12 samples, per trained glance
        maps = model.forward_with_attention(x)[1]
    from attnrobust.metrics.attention import map_variation
    assert race["attention"]["tv_between_images"] == pytest.approx(map_variation(maps))
    assert race["attention"]["tv_clean_vs_adv"] == [0.0, 0.0] and len(race["attention"]["peak_mass"]) == 2


def test_race_of_a_model_without_glances_is_one_row(tiny_model, tiny_batch):
    x, y = tiny_batch
    race, attention = run_race(tiny_model, x, y, _cfg(eps=16), num_classes=5, device="cpu")
    assert race["glances"] == [0] and len(race["acc"]) == 1 and attention == {} and "attention" not in race
    assert race["acc"][0][-1] <= race["acc"][0][0] + 2 / 12  # more steps never help (up to 2 samples)


def test_race_config_is_validated():
    with pytest.raises(ValueError, match="race_glances"):
        _cfg(race_glances=[0, 2])
    with pytest.raises(ValueError, match="race_step_size"):
        _cfg(race_step_size=0)


def test_white_box_weaker_than_transfer_is_flagged():
    race = {"acc": [[0.30, 0.25], [0.50, 0.45]], "transfer_acc": [[0.30, 0.25], [0.40, 0.40]]}
    checks = race_sanity(race, 200)
    assert checks["race_steps_monotone"]["passed"]
    assert not checks["race_whitebox_beats_transfer"]["passed"]  # g2: white-box 0.50 vs transfer 0.40
    race["transfer_acc"][1] = [0.51, 0.50]
    assert race_sanity(race, 200)["race_whitebox_beats_transfer"]["passed"]


def test_race_table_is_long_format(tmp_path):
    race = {"glances": [1, 2], "steps": [10, 50], "acc": [[0.5, 0.4], [0.6, 0.55]],
            "worst_acc": [[0.5, 0.4], [0.5, 0.5]]}
    summaries = {"a": {"race": race}, "b": {"curves": {}}}
    [path] = write_race(tmp_path / "race.csv", summaries)
    lines = path.read_text().splitlines()
    assert lines[0] == "experiment,glances,steps,acc,worst_acc" and lines[1:] == [
        "a,1,10,0.5000,0.5000", "a,1,50,0.4000,0.4000", "a,2,10,0.6000,0.5000", "a,2,50,0.5500,0.5000"]
    assert write_race(tmp_path / "none.csv", {"b": summaries["b"]}) == []


def _summary(targeted, race_acc, glances, trained, unreliable=False, worst=None):
    race = {"n": 200, "glances": glances, "steps": [10, 50], "acc": race_acc, "worst_acc": worst or race_acc,
            "trained_glances": trained}
    return {"n": 200, "pgd_targeted_acc": targeted, "robust_acc": targeted - 0.1, "unreliable": unreliable,
            "race": race}


def test_s3ta_claims():
    base = _summary(0.30, [[0.32, 0.28]], [0], 0)
    good = _summary(0.40, [[0.30, 0.25], [0.38, 0.35], [0.45, 0.40]], [1, 2, 4], 2)
    gain, race = s3ta_claims({"s": good, "b": base}, "s", "b")
    assert set(gain) == {"claim", "paper", "ours", "holds", "comparisons"}
    assert gain["comparisons"][0]["column_a"] == "pgd_targeted_correct"  # the paired test behind the verdict
    assert gain["holds"] and race["holds"]
    assert "+0.100" in gain["ours"] and "g4 0.400" in race["ours"]
    gain = s3ta_claims({"s": {**good, "clean_acc": 0.49}, "b": {**base, "clean_acc": 0.397}}, "s", "b")[0]
    assert "clean accuracy 0.490 vs 0.397 (gap +0.093)" in gain["ours"]  # an under-trained baseline is stated
    worse = _summary(0.25, [[0.30, 0.25], [0.20, 0.35]], [1, 2], 2, unreliable=True)
    gain, race = s3ta_claims({"s": worse, "b": base}, "s", "b")
    assert not gain["holds"] and not race["holds"] and "UNRELIABLE" in gain["ours"]


def test_glances_claim_counts_transfer_attacks():
    masked = _summary(0.40, [[0.30, 0.25], [0.38, 0.35], [0.60, 0.55]], [1, 2, 8], 2,
                      worst=[[0.30, 0.25], [0.38, 0.35], [0.33, 0.30]])  # g8 only hides its gradients
    _, race = s3ta_claims({"s": masked, "b": _summary(0.3, [[0.3, 0.3]], [0], 0)}, "s", "b")
    assert not race["holds"] and "g8 0.330 (white-box 0.600)" in race["ours"]


def test_trained_s3ta_is_evaluated_with_race_and_attention_maps(prepared_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # dvclive inspects the git repo around the cwd
    exp = parse_experiment("s3ta", {"dataset": "gtsrb", "method": "pgd_at", "model": "s3ta", "train_steps": 2,
                                    "train_target": "random",
                                    "model_args": {"width": 4, "hidden": 16, "key_dim": 4, "value_dim": 4,
                                                   "glances": 2}}, "test")
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.01, weight_decay=0.0, seeds=[0], device="cpu", threads=1)
    train_experiment(exp, cfg, prepared_dir, tmp_path / "m", tmp_path / "live")
    assert load_model(tmp_path / "m").glances == 2
    summary = evaluate_checkpoint("s3ta", tmp_path / "m", prepared_dir, tmp_path / "out", _cfg())
    assert summary["race"]["glances"] == [1, 3] and "race_steps_monotone" in summary["sanity"]
    with np.load(tmp_path / "out" / "attention.npz") as npz:
        assert npz["attention_clean"].shape == (3, 2, 2, 4, 4)  # 16 px inputs: 4x4 maps
        assert int(npz["glances"]) == 2
    att = summary["race"]["attention"]
    assert len(att["tv_between_images"]) == len(att["tv_clean_vs_adv"]) == 2
    assert all(0 <= v <= 1 for v in att["tv_between_images"] + att["tv_clean_vs_adv"])
    from attnrobust.metrics.aggregate import headline_metrics
    row = headline_metrics({"s3ta": {**summary, "per_seed": [summary]}})["s3ta"]
    assert row["attn_tv"] == pytest.approx(np.mean(att["tv_between_images"]), abs=1e-4) and "attn_tv_adv" in row


def _race_summary(rng, p_lo: float, p_hi: float, n: int = 80) -> dict:
    correct = [[(rng.random(n) < p).astype(int).tolist() for _ in (10, 50)] for p in (p_lo, p_hi)]
    acc = [[float(np.mean(c)) for c in row] for row in correct]
    return {"race": {"n": n, "glances": [1, 4], "steps": [10, 50], "trained_glances": 4, "acc": acc,
                     "transfer_acc": acc, "worst_acc": acc, "worst_correct": correct}}


def test_race_trend_claim_is_a_paired_test_over_seeds():
    """More glances, more robust at every attack strength: the most glances against the fewest on
    the race's samples, McNemar stratified by seed, required at each attack strength."""
    from attnrobust.metrics.claims_base import run_paper_tests

    rng = np.random.default_rng(0)
    for p_hi, verdict in ((0.8, "holds"), (0.3, "inconclusive")):  # 0.3 < 0.3 + noise: no trend
        seeds = [_race_summary(rng, 0.3, p_hi) for _ in range(2)]
        model = {**seeds[0], "per_seed": seeds}
        claim = s3ta_claims({"s": {**model, "pgd_targeted_acc": 0.5, "robust_acc": 0.4, "n": 80},
                             "b": {"pgd_targeted_acc": 0.4, "robust_acc": 0.3, "n": 80}}, "s", "b")[1]
        tested = run_paper_tests({"s": model}, [{**claim, "comparisons": claim["comparisons"]}])[0]
        assert tested["verdict"] == verdict
        assert [t["seeds"] for t in tested["tests"]] == [2, 2] and [t["n"] for t in tested["tests"]] == [80, 80]
        assert "untested" not in tested


def _trained_at(k: int, p: float, rng, n: int = 80, seeds: int = 2) -> dict:
    """A pooled summary of an S3TA-k model whose race rows at its own k are right with probability p."""
    def one():
        correct = [[(rng.random(n) < (p if g == k else 0.1)).astype(int).tolist() for _ in (10, 50)]
                   for g in (1, 2, 4)]
        acc = [[float(np.mean(c)) for c in row] for row in correct]
        return {"race": {"n": n, "glances": [1, 2, 4], "steps": [10, 50], "trained_glances": k, "acc": acc,
                         "transfer_acc": acc, "worst_acc": acc, "worst_correct": correct}}
    per_seed = [one() for _ in range(seeds)]
    return {**per_seed[0], "per_seed": per_seed, "pgd_targeted_acc": 0.5, "robust_acc": 0.4, "n": n}


def test_the_race_of_s3ta_k_models_compares_each_at_its_own_glances():
    """Zoran et al.'s race: models trained with k glances, each run at its own k, against growing
    attack steps; the paired test is the most glances' model against the fewest, at every strength."""
    from attnrobust.metrics.claims_base import run_paper_tests

    rng = np.random.default_rng(1)
    base = {"pgd_targeted_acc": 0.4, "robust_acc": 0.3, "n": 80}
    for p4, verdict in ((0.8, "holds"), (0.3, "inconclusive")):
        summaries = {"s4": _trained_at(4, p4, rng), "s1": _trained_at(1, 0.3, rng), "s2": _trained_at(2, 0.5, rng),
                     "b": base}
        claims = s3ta_claims(summaries, "s4", "b", one_glance="s1", two_glances="s2")
        race = claims[-1]
        assert len(claims) == 3 and "S3TA-k models" in race["claim"]
        assert "S3TA-1" in race["ours"] and "S3TA-2" in race["ours"] and "S3TA-4" in race["ours"]
        assert [(c["a"], c["b"], c["glances"], c["steps"]) for c in race["comparisons"]] == [
            ("s4", "s1", [4, 1], 10), ("s4", "s1", [4, 1], 50)]  # each at its own glances, not one model unrolled
        assert race["holds"] == (p4 == 0.8)
        tested = run_paper_tests(summaries, [race])[0]
        assert tested["verdict"] == verdict and [t["seeds"] for t in tested["tests"]] == [2, 2]
    assert len(s3ta_claims(summaries, "s4", "b")) == 2  # without the S3TA-k models, no such claim


def test_central_crop_control_sees_only_the_centre():
    """The search task's control (issue 16): a cnn with ``crop: 0.5`` ignores, and has no gradient
    for, every pixel outside the central half of each side; ``crop: 1`` is the plain model."""
    from attnrobust.models.cnn import SmallResNet

    torch.manual_seed(0)
    stats = [0.5] * 3, [0.25] * 3
    crop, plain = SmallResNet(5, *stats, width=4, crop=0.5), SmallResNet(5, *stats, width=4)
    plain.load_state_dict(crop.state_dict())
    crop.eval(), plain.eval()
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    crop(x).sum().backward()
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[8:24, 8:24] = False
    assert x.grad[..., outside].abs().max() == 0 and x.grad[..., ~outside].abs().max() > 0
    y = x.detach().clone()
    y[..., outside] = torch.rand(int(outside.sum()))
    assert torch.allclose(crop(x), crop(y)) and not torch.allclose(plain(x), plain(y))
    assert torch.equal(plain.central_crop(x), x)
    with pytest.raises(ValueError, match="crop"):
        SmallResNet(5, [0.5] * 3, [0.25] * 3, crop=0.0)


def test_s3ta_claims_on_a_search_task_include_the_central_crop_control():
    base = {**_summary(0.30, [[0.32, 0.28]], [0], 0), "clean_acc": 0.66}
    crop = {**base, "clean_acc": 0.43, "trained_as": {"model_args": {"width": 16, "crop": 0.5}}}
    good = {**_summary(0.40, [[0.30, 0.25], [0.38, 0.35], [0.45, 0.40]], [1, 2, 4], 4), "clean_acc": 0.7}
    claims = s3ta_claims({"s": good, "b": base, "c": crop}, "s", "b", central_crop="c", dataset="scenes")
    gain, search, race = claims
    assert all(c["claim"].startswith("scenes: ") for c in claims)
    assert search["comparisons"] == [{"a": "b", "b": "c", "column_a": "clean_correct", "column_b": "clean_correct",
                                      "threshold": 0.0, "label": "clean, whole image vs central crop"}]
    assert search["holds"] and "central crop (0.5 of each side): 0.660 vs 0.430 (+0.230)" in search["ours"]
    tie = {"s": good, "b": base, "c": {**crop, "clean_acc": 0.65}}
    assert not s3ta_claims(tie, "s", "b", central_crop="c")[1]["holds"]
    # with the whole test split's clean outcomes (attack@'s clean_test.npz), the control pairs every test image
    whole = {"s": good, "b": {**base, "clean_acc_test": 0.61, "n_test": 250},
             "c": {**crop, "clean_acc_test": 0.48, "n_test": 250}}
    search = s3ta_claims(whole, "s", "b", central_crop="c")[1]
    assert search["comparisons"] == [{"a": "b", "b": "c", "statistic": "clean_test", "threshold": 0.0,
                                      "label": "clean, whole image vs central crop, every test image"}]
    assert "on all 250 test images, whole image vs central crop (0.5 of each side): 0.610 vs 0.480" in search["ours"]
