"""Nakka & Salzmann's prototype attention: model, loss, phases, push, per-head attacks and claims."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from attnrobust import training
from attnrobust.evaluation import evaluate_checkpoint
from attnrobust.attacks.heads import HeadsView, head_loss, head_misclassified, run_head_attacks
from attnrobust.attacks.pgd import mim
from attnrobust.attacks.pgd import pgd
from attnrobust.attacks.suite import AttackConfig
from attnrobust.checkpoint import load_model, read_checkpoint
from attnrobust.errors import UserError
from attnrobust.experiment import parse_experiment
from attnrobust.methods.base import Batch
from attnrobust.methods.protoattn import (ProtoAttnConfig, begin_epoch, fgsm_rs, phase, protoattn_loss,
                                          prototype_costs)
from attnrobust.metrics.aggregate import headline_metrics
from attnrobust.metrics.claims import evaluate_claims
from attnrobust.metrics.claims_protoattn import protoattn_claims
from attnrobust.models import build_model
from attnrobust.tasks import IMAGE, Tensors
from attnrobust.training import TrainConfig, train_experiment

KW = {"num_classes": 3, "mean": [0.5] * 3, "std": [0.25] * 3}
TINY = {"width": 4, "proto_dim": 4, "prototypes_per_class": 2}


def _model(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("protoattn", **KW, **{**TINY, **kw}).eval()


def _batch(n=12, size=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g), torch.arange(n) % 3


def test_heads_shapes_and_last_layer_initialisation():
    model = _model()
    x, _ = _batch()
    out = model.forward_heads(x)
    assert out.fr.shape == out.a.shape == (12, 3)
    assert out.attention.shape == (12, 4, 4) and out.distances.shape == (12, 6, 4, 4)  # 16 px -> 4x4, K = 3 * 2
    assert out.features.shape == (12, 4, 4, 4) and ((out.features >= 0) & (out.features <= 1)).all()
    assert torch.equal(model(x), out.fr)
    model.head = "a"
    assert torch.equal(model(x), out.a)
    weight = model.last_layer.weight  # (C, K): +1 from a class's own prototypes, -0.5 from the others
    assert torch.equal(weight[0], torch.tensor([1.0, 1.0, -0.5, -0.5, -0.5, -0.5]))
    assert torch.equal(model.prototype_class, torch.tensor([0, 0, 1, 1, 2, 2]))
    with pytest.raises(UserError, match="bad model_args"):
        build_model("protoattn", **KW, head="b")


def test_attention_map_is_in_the_unit_interval():
    model = _model()
    for x in (_batch()[0], torch.zeros(2, 3, 16, 16), torch.ones(2, 3, 16, 16)):
        maps = model.attention_maps(x)
        assert maps.shape == (len(x), 4, 4)
        assert ((maps >= 0) & (maps <= 1)).all() and torch.isfinite(maps).all()
        peak = maps.flatten(1).amax(1)
        assert ((peak == 1) | (peak == 0)).all()  # normalised by its spatial max (all-zero stays zero)


def test_separation_loss_decreases_as_prototypes_move_apart():
    model = _model()
    x, _ = _batch()
    y = torch.zeros(12, dtype=torch.long)  # every sample is class 0: classes 1 and 2 are "other"
    cfg = ProtoAttnConfig(lambda_c=0.0, lambda_s=-0.08, l1=0.0)
    batch = Batch(x, y, torch.ones(12, 1, 16, 16), IMAGE)
    base = model.prototypes.detach().clone()
    direction = torch.ones(4)
    terms = []
    for t in (0.0, 0.5, 1.0, 2.0):
        with torch.no_grad():
            model.prototypes.copy_(base)
            model.prototypes[2:] += t * direction  # class 1 and 2 prototypes move away from [0, 1]^D
        out = model.forward_heads(x)
        cluster, separation = prototype_costs(out.distances, out.attention, model.prototype_class, y)
        terms.append((cfg.lambda_s * separation).item())
        without = protoattn_loss(model, batch, dataclasses.replace(cfg, lambda_s=0.0), None)
        assert protoattn_loss(model, batch, cfg, None).item() == pytest.approx(
            without.item() + cfg.lambda_s * separation.item(), rel=1e-5)
    assert all(b < a for a, b in zip(terms, terms[1:]))  # strictly decreasing as they move apart
    # a gradient step on the separation term alone moves other-class prototypes away
    with torch.no_grad():
        model.prototypes.copy_(base)
    out = model.forward_heads(x)
    before = prototype_costs(out.distances, out.attention, model.prototype_class, y)[1]
    (cfg.lambda_s * before).backward()
    with torch.no_grad():
        model.prototypes -= 1.0 * model.prototypes.grad
        out = model.forward_heads(x)
        after = prototype_costs(out.distances, out.attention, model.prototype_class, y)[1]
    assert after > before


def test_the_official_weighting_pairs_every_attention_map_with_every_samples_distances():
    """``weighting: batch`` is the official code's broadcast of M (B, 1, h, w) against the minima
    (B, h, w): the mean over (B, B, h, w), i.e. batch-mean attention times batch-mean distance per
    position; ``own`` pairs each sample with its own attention only."""
    g = torch.Generator().manual_seed(0)
    distances, attention = torch.rand(5, 6, 3, 3, generator=g), torch.rand(5, 3, 3, generator=g)
    prototype_class, y = torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 1, 2, 0, 1])
    own = (prototype_class[None, :] == y[:, None])[:, :, None, None]
    nearest_own = distances.masked_fill(~own, float("inf")).amin(1)
    nearest_other = distances.masked_fill(own, float("inf")).amin(1)
    cluster, separation = prototype_costs(distances, attention, prototype_class, y, "batch")
    official = torch.einsum("ahw,bhw->abhw", attention, nearest_own).mean()
    assert cluster.item() == pytest.approx(official.item(), rel=1e-6)
    assert cluster.item() == pytest.approx((attention.mean(0) * nearest_own.mean(0)).mean().item(), rel=1e-6)
    assert separation.item() == pytest.approx((attention.mean(0) * nearest_other.mean(0)).mean().item(), rel=1e-6)
    mine = prototype_costs(distances, attention, prototype_class, y, "own")
    assert mine[0].item() == pytest.approx((attention * nearest_own).mean().item(), rel=1e-6)
    assert abs(mine[0].item() - cluster.item()) > 1e-3  # the two weightings are different losses


def test_push_moves_each_prototype_onto_a_real_training_patch():
    model = _model()
    x, y = _batch(n=10, seed=3)
    y = torch.tensor([0, 1, 1, 0, 1, 0, 1, 1, 0, 1])  # no image of class 2
    before = model.prototypes.detach().clone()
    source = model.push_prototypes(x, y, batch_size=4)  # batches must not matter
    with torch.no_grad():
        z = model.latent(x)[1]  # (N, D, h, w) in eval mode, as push sees it
    for k in range(4):  # prototypes of classes 0 and 1
        b, h, w = source[k].tolist()
        assert y[b] == model.prototype_class[k]
        assert torch.equal(model.prototypes[k], z[b, :, h, w])
        own = z[y == model.prototype_class[k]].permute(0, 2, 3, 1).reshape(-1, 4)  # every patch of its class
        assert (own - before[k]).pow(2).sum(1).min() == pytest.approx(float((z[b, :, h, w] - before[k]).pow(2).sum()),
                                                                      abs=1e-6)  # the nearest one
    assert (source[4:] == -1).all() and torch.equal(model.prototypes[4:], before[4:])  # class 2: left in place
    assert not model.training  # eval mode restored (it was eval)


def test_phases_freeze_the_right_parameters_and_push_once():
    model = _model().train()
    cfg = ProtoAttnConfig(warm_epochs=1, last_layer_epochs=2, push=True)
    x, y = _batch()
    train = Tensors(x, y, torch.ones(12, 1, 16, 16))
    trainable = lambda: {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}  # noqa: E731
    assert [phase(cfg, e, 5) for e in range(5)] == ["warm", "joint", "joint", "last_layer", "last_layer"]
    warm = begin_epoch(model, cfg, 0, 5, train, "cpu")
    assert trainable() == {"add_on", "attention", "prototypes"} and warm.lambda_c == warm.lambda_s == 0
    assert begin_epoch(model, cfg, 1, 5, train, "cpu") == cfg
    assert trainable() == {"trunk", "add_on", "attention", "prototypes"}
    before = model.prototypes.detach().clone()
    begin_epoch(model, cfg, 3, 5, train, "cpu")
    assert trainable() == {"last_layer"} and not torch.equal(model.prototypes, before)  # pushed
    pushed = model.prototypes.detach().clone()
    begin_epoch(model, cfg, 4, 5, train, "cpu")
    assert torch.equal(model.prototypes, pushed) and model.training  # push happens once; train mode kept
    with pytest.raises(UserError, match="exceed train.epochs"):
        phase(cfg, 0, 2)
    with pytest.raises(UserError, match="model: protoattn"):
        begin_epoch(build_model("cnn", **KW, width=4), cfg, 0, 5, train, "cpu")


def test_config_is_validated():
    with pytest.raises(UserError, match="lambda_s must be <= 0"):
        parse_experiment("p", {"dataset": "gtsrb", "method": "protoattn", "model": "protoattn", "lambda_s": 0.1}, "t")
    with pytest.raises(UserError, match="last_layer_epochs >= 1"):
        parse_experiment("p", {"dataset": "gtsrb", "method": "protoattn", "model": "protoattn",
                               "last_layer_epochs": 0}, "t")
    with pytest.raises(UserError, match="adversarial"):
        parse_experiment("p", {"dataset": "gtsrb", "method": "protoattn", "model": "protoattn",
                               "adversarial": "pgd"}, "t")


def test_fgsm_rs_stays_in_budget_and_ascends_both_heads():
    model = _model().train()
    x, y = _batch()
    cfg = ProtoAttnConfig(adversarial="fgsm_rs", train_eps=8, train_step_size=10.0)
    x_adv = fgsm_rs(model, Batch(x, y, torch.ones(12, 1, 16, 16), IMAGE), cfg, torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert model.training and all(p.requires_grad for p in model.parameters())  # restored
    model.eval()  # the attack ran in eval mode (BatchNorm running statistics, no dropout)
    with torch.no_grad():
        clean, adv = model.forward_heads(x), model.forward_heads(x_adv)
    ce = lambda o: torch.nn.functional.cross_entropy(o.fr, y) + torch.nn.functional.cross_entropy(o.a, y)  # noqa
    assert ce(adv) > ce(clean)


def test_mim_equals_bim_on_a_linear_model_and_respects_the_budget():
    torch.manual_seed(0)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4)).eval()
    x, y = torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    heads = ("single",)
    view = HeadsView(linear, heads)
    never = lambda logits, t: torch.zeros(len(t), dtype=torch.bool)  # noqa: E731  (no early stop)
    kw = dict(eps=4 / 255, steps=5, step_size=0.8 / 255, loss_fn=head_loss(heads, ("single",)), success_fn=never)
    x_mim = mim(view, x, y, **kw)
    x_bim = pgd(view, x, y, random_start=False, **kw)
    assert torch.allclose(x_mim, x_bim, atol=1e-6)  # constant gradient: momentum keeps its sign
    assert (x_mim - x).abs().max() <= 4 / 255 + 1e-6
    stop = mim(view, x, y, **{**kw, "success_fn": head_misclassified(heads, "single")})
    with torch.no_grad():
        wrong = linear(x).argmax(1) != y
    assert torch.equal(stop[wrong], x[wrong])  # already misclassified: left clean


def _attack_cfg(**kw) -> AttackConfig:
    return AttackConfig(**{"eps": 4, "steps": 2, "n_samples": 0, "batch_size": 16, "eps_sweep": [4],
                           "steps_sweep": [1], "race_steps": [], "device": "cpu", "head_eps": [2, 4],
                           "head_steps": 2, "attention_examples": 0, **kw})


def test_head_attacks_of_a_single_head_model(tiny_model, tiny_batch):
    x, y = tiny_batch
    full = {"eps": 4, "sanity": {}, "robust_acc": 1.0}
    cols = {"worst_correct": torch.ones(len(y), dtype=torch.long).numpy()}
    summary, columns = run_head_attacks(tiny_model, x, y, _attack_cfg(), full, cols, device="cpu")
    single = summary["heads"]["single"]
    assert list(summary["heads"]) == ["single"] and single["loss"] == "CE(single)"
    for eps in (2, 4):
        accs = [single[f"{a}_acc_eps{eps}"] for a in ("fgsm", "bim", "pgd", "mim")]
        assert single[f"worst_acc_eps{eps}"] <= min(accs) <= single["clean_acc"]
    assert summary["robust_acc"] == pytest.approx(float(columns["worst_correct"].mean()))
    assert summary["robust_acc"] == pytest.approx(single["worst_acc_eps4"])  # folded both ways: forward()
    assert "official_loss" not in single and "single_worst_eps2_correct" in columns
    assert "latent" not in summary and summary["sanity"]["heads_nonzero_gradients"]["passed"]
    assert run_head_attacks(tiny_model, x, y, _attack_cfg(head_eps=[]), full, cols, device="cpu") == (full, cols)


@pytest.fixture
def trained_protoattn(prepared_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # dvclive inspects the git repo around the cwd
    exp = parse_experiment("pa", {"dataset": "gtsrb", "method": "protoattn", "model": "protoattn",
                                  "model_args": TINY, "warm_epochs": 1, "last_layer_epochs": 1, "lambda_c": 1.0},
                           "test")
    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.01, weight_decay=0.0, seeds=[0], device="cpu", threads=1)
    return exp, cfg


def test_training_pushes_and_resumes_to_the_same_model(trained_protoattn, prepared_dir, tmp_path, monkeypatch):
    exp, cfg = trained_protoattn
    train_experiment(exp, cfg, prepared_dir, tmp_path / "full", tmp_path / "live_full")
    model = load_model(tmp_path / "full")
    train = IMAGE.load(prepared_dir, "train")
    with torch.no_grad():
        z = model.latent(train.x)[1].permute(0, 2, 3, 1).reshape(-1, 4)  # every training patch
    assert all((z - p).abs().amax(1).min() < 1e-5 for p in model.prototypes)  # pushed; only W trained since
    real_epoch, calls = training.train_one_epoch, {"n": 0}

    def crash_in_last_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_one_epoch", crash_in_last_epoch)
    resume = tmp_path / "resume.pt"
    with pytest.raises(KeyboardInterrupt):
        train_experiment(exp, cfg, prepared_dir, tmp_path / "r", tmp_path / "live_r", resume_file=resume)
    monkeypatch.setattr(training, "train_one_epoch", real_epoch)
    train_experiment(exp, cfg, prepared_dir, tmp_path / "r", tmp_path / "live_r", resume_file=resume)
    full, resumed = read_checkpoint(tmp_path / "full")["state_dict"], read_checkpoint(tmp_path / "r")["state_dict"]
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def test_evaluation_writes_per_head_results(trained_protoattn, prepared_dir, tmp_path):
    exp, cfg = trained_protoattn
    exp = dataclasses.replace(exp, method_config=dataclasses.replace(exp.method_config, adversarial="fgsm_rs"))
    train_experiment(exp, cfg, prepared_dir, tmp_path / "m", tmp_path / "live")
    summary = evaluate_checkpoint("pa", tmp_path / "m", prepared_dir, tmp_path / "out", _attack_cfg())
    assert set(summary["heads"]) == {"fr", "a"} and summary["head_attacks"]["primary"] == "fr"
    fr, a = summary["heads"]["fr"], summary["heads"]["a"]
    assert fr["loss"] == "CE(fr) + CE(a); CE(fr)" and a["loss"] == "CE(a)" and "official_loss" not in a
    assert fr["official_loss"]["loss"] == "CE(fr) + CE(a)"
    for attack in ("bim", "mim"):  # per sample the worse of the two losses: never above the official one
        assert fr[f"{attack}_acc_eps4"] <= fr["official_loss"][f"{attack}_acc_eps4"]
    assert fr["worst_acc_eps4"] == pytest.approx(summary["robust_acc"])  # eps 4 = attack.eps: folded both ways
    for head in ("fr", "a"):
        assert {f"{a}_acc_eps{e}" for a in ("bim", "mim") for e in (2, 4)} <= set(summary["heads"][head])
    assert summary["robust_acc"] <= summary["heads"]["fr"]["worst_acc_eps4"] + 1e-9
    # the A head faces the whole shared suite too, as its single-head baselines do
    assert set(a["suite"]) >= {"clean_acc", "pgd_acc", "pgd_targeted_acc", "robust_acc"}
    assert a["worst_acc_eps4"] <= a["suite"]["robust_acc"] + 1e-9 and "suite" not in fr
    assert {"heads_a_eps_monotone", "heads_a_whole_box_zero"} <= set(summary["sanity"])
    latent = summary["latent"]
    assert set(latent) == {"clean", "bim_eps4"} and latent["clean"]["ratio"] > 0
    assert latent["clean"]["ratio"] == pytest.approx(latent["clean"]["other"] / latent["clean"]["own"])
    with np.load(tmp_path / "out" / "scores.npz") as per_sample:  # the latent claim's paired bootstrap reads these
        assert per_sample["latent_other"].mean() / per_sample["latent_own"].mean() == pytest.approx(
            latent["clean"]["ratio"], rel=1e-5)
    header = (tmp_path / "out" / "per_sample.csv").read_text().splitlines()[0].split(",")
    assert {"fr_bim_eps2_correct", "a_mim_eps4_correct", "worst_correct"} <= set(header)
    assert "latent_own" not in header  # floats stay out of per_sample.csv
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["heads"]["a"] == summary["heads"]["a"]
    row = headline_metrics({"pa": summary})["pa"]
    assert row["fr_bim_acc_eps4"] == round(summary["heads"]["fr"]["bim_acc_eps4"], 4) and "latent_ratio" in row


def _summary(fr, a=None, ratio=None, eps=(2, 8), unreliable=False, clean=0.8):
    def scores(worst):
        return {"clean_acc": clean, **{f"worst_acc_eps{e}": v for e, v in zip(eps, worst)}}
    heads = {"single": scores(fr)} if a is None else {"fr": scores(fr), "a": scores(a)}
    s = {"n": 200, "unreliable": unreliable, "heads": heads,
         "head_attacks": {"eps": list(eps), "primary": "fr" if a is not None else "single"}}
    if ratio is not None:
        s["latent"] = {"clean": {"own": 1.0, "other": ratio, "ratio": ratio}}
    return s


def test_protoattn_claims():
    summaries = {"pa": _summary([0.40, 0.10], [0.45, 0.02], ratio=3.0), "std": _summary([0.20, 0.00]),
                 "at": _summary([0.405, 0.105]), "nosep": _summary([0.30, 0.05], [0.45, 0.02], ratio=2.0),
                 "rob": _summary([0.60, 0.30], [0.3, 0.05], ratio=3.0, unreliable=True)}
    claims = protoattn_claims(summaries, "pa", "std", "at", "nosep", robust="rob")
    assert [c["claim"].split("(head ")[-1] for c in claims if "(head " in c["claim"]] == (
        ["fr)"] * 3 + ["a)"] * 3 + ["fr)", "a)"])  # every robustness claim for each head; the latent one once
    std_fr, at_fr, sep_fr, std_a, at_a, sep_a, latent, rob_fr, rob_a = claims
    assert std_fr["holds"] and "head fr vs std head single: eps 2: 0.400 vs 0.200 (+0.200)" in std_fr["ours"]
    assert at_fr["holds"]  # 0.5 pp below PGD-AT at both budgets: within the tolerance (1 pp), so it "matches"
    assert not at_a["holds"] and std_a["holds"]  # head a: 0.02 vs 0.105 at eps 8
    assert sep_fr["holds"] and not sep_a["holds"]  # head a is the same with and without separation
    assert latent["holds"] and "3.00" in latent["ours"]
    assert rob_fr["holds"] and not rob_a["holds"] and rob_fr["unreliable"] and not std_fr["unreliable"]
    at_better = protoattn_claims({**summaries, "at": _summary([0.45, 0.20])}, "pa", "std", "at", "nosep")
    assert not at_better[1]["holds"] and len(at_better) == 7  # no robust variant: no claims on it
    swapped = protoattn_claims({**summaries, "nosep": summaries["pa"], "pa": summaries["nosep"]},
                               "pa", "std", "at", "nosep")
    assert not swapped[2]["holds"] and not swapped[6]["holds"]
    with pytest.raises(UserError, match="no per-head attacks"):
        protoattn_claims({**summaries, "std": {"n": 200}}, "pa", "std", "at", "nosep")
    table = evaluate_claims(summaries, {"protoattn": [{"protoattn": "pa", "standard": "std", "pgd_at": "at",
                                                       "nosep": "nosep"}]})
    assert set(table) == {f"protoattn/0/{j}" for j in range(7)}
    official = protoattn_claims({**summaries, "off": _summary([0.19, 0.00], [0.45, 0.02])}, "pa", "std", "at",
                                "nosep", robust="rob", official="off")
    assert len(official) == 13 and official[:9] == claims  # the official loss adds its own claims, per head
    off_std_fr, off_at_fr, off_std_a, off_at_a = official[9:]
    assert "official code's loss" in off_std_fr["claim"] and off_std_fr["claim"].endswith("(head fr)")
    assert not off_std_fr["holds"] and off_std_a["holds"]  # fr no better than standard; a is the pa's a head
    assert "off head fr vs std head single" in off_std_fr["ours"] and not off_at_fr["holds"]


def test_head_attacks_survive_a_model_that_every_attack_breaks():
    """When the first loss already breaks every sample, the further losses attack no rows at all:
    the engine returns empty read-outs and examples of the right shapes."""
    from torch import nn

    from attnrobust.attacks.engine import Engine, top1

    x, y = torch.rand(5, 3, 8, 8), torch.zeros(5, dtype=torch.long)
    view = HeadsView(nn.Sequential(nn.Flatten(), nn.Linear(192, 3)), ("single",))
    engine = Engine(view, x, y, AttackConfig(eps=8, steps=2, device="cpu"), device=torch.device("cpu"))
    none = torch.zeros(0, dtype=torch.long)
    assert engine.attack(none, eps=8, steps=2).shape == (0, 3, 8, 8)
    assert engine.attack(none, eps=8, steps=2, readout=top1).shape == (0, 1)


def test_single_head_models_get_the_head_attacks_only_when_listed_as_baselines(prepared_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # dvclive inspects the git repo around the cwd
    exp = parse_experiment("base", {"dataset": "gtsrb", "method": "standard", "model": "cnn",
                                    "model_args": {"width": 4}}, "test")
    train_experiment(exp, TrainConfig(epochs=1, batch_size=16, lr=0.01, weight_decay=0.0, seeds=[0], device="cpu",
                                      threads=1), prepared_dir, tmp_path / "m", tmp_path / "live")
    off = evaluate_checkpoint("base", tmp_path / "m", prepared_dir, tmp_path / "off", _attack_cfg())
    on = evaluate_checkpoint("base", tmp_path / "m", prepared_dir, tmp_path / "on", _attack_cfg(head_baselines=["base"]))
    assert "heads" not in off and set(on["heads"]) == {"single"}
    assert on["robust_acc"] <= off["robust_acc"]  # more attacks fold into the worst case, never fewer
