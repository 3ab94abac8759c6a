"""The evaluation engine (attacks/engine.py): budgets, shares, read-outs, restarts, precision."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from attnrobust.attacks.engine import Autocast, Engine, ThreatModel, fp32, top1, with_precision
from attnrobust.attacks.suite import AttackConfig
from attnrobust.models import build_model
from attnrobust.units import Domain, input_bounds, levels_to_input

CPU = torch.device("cpu")


def _setup(n=10):
    torch.manual_seed(0)
    model = build_model("cnn", num_classes=3, width=4, mean=[0.5] * 3, std=[0.25] * 3).eval()
    x = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    return model, x, torch.arange(n) % 3


def test_per_row_budgets_in_levels_keep_every_row_in_its_own_ball_and_the_box():
    model, x, y = _setup()
    engine = Engine(model, x, y, AttackConfig(eps=8, steps=3, device="cpu"), device=CPU)
    rows = torch.arange(10).repeat(2)
    eps = torch.tensor([2.0] * 10 + [16.0] * 10)
    x_adv = engine.attack(rows, eps=eps, steps=3)
    dist = (x_adv - x[rows]).abs().flatten(1).amax(1)
    assert (dist <= eps * levels_to_input(1) + 1e-6).all() and (dist[10:] > 2 / 255).any()
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_a_perturbation_mask_and_the_video_box_hold():
    x = torch.rand(6, 4, 5) * 2 - 1
    y = (torch.rand(6, 3) < 0.5).float()
    model = nn.Sequential(nn.Flatten(), nn.Linear(20, 3))
    mask = torch.ones(6, 4, 5)
    mask[:, 2:] = 0  # the last two frames are off limits
    threat = ThreatModel(Domain.YT8M, mask, loss_fn=lambda z, t: nn.functional.binary_cross_entropy_with_logits(
        z, t, reduction="sum"))
    engine = Engine(model, x, y, AttackConfig(eps=8, steps=2, device="cpu"), device=CPU, threat=threat)
    x_adv = engine.attack(eps=8, steps=2)
    assert torch.equal(x_adv[:, 2:], x[:, 2:]) and not torch.equal(x_adv[:, :2], x[:, :2])
    lo, hi = input_bounds(Domain.YT8M)
    assert lo <= x_adv.min() and x_adv.max() <= hi
    assert (x_adv - x).abs().max() <= 8 * levels_to_input(1, "yt8m") + 1e-6


def test_nothing_perturbable_returns_every_input_without_a_gradient(monkeypatch):
    """The mask-only floor: a threat model with an all-zero mask gets its inputs back, and the
    engine spends no attack on them (pgd is never called)."""
    import attnrobust.attacks.engine as engine_module

    model, x, y = _setup()
    threat = ThreatModel(Domain.IMAGE, torch.zeros(1, 3, 1, 1))
    engine = Engine(model, x, y, AttackConfig(eps=8, steps=3, device="cpu"), device=CPU, threat=threat)
    monkeypatch.setattr(engine_module, "pgd", lambda *a, **k: pytest.fail("attacked a fixed input"))
    assert torch.equal(engine.attack(eps=255, steps=3), x)
    assert torch.equal(engine.attack(eps=8, steps=3, readout=top1), engine.read(readout=top1))


def test_read_outs_come_back_for_every_row_in_order():
    model, x, y = _setup()
    engine = Engine(model, x, y, AttackConfig(eps=8, steps=2, batch_size=3, device="cpu"), device=CPU)
    with torch.no_grad():
        assert torch.equal(engine.read(readout=top1), model(x).argmax(1))
        torch.testing.assert_close(engine.read(x[:4], fp32), model(x[:4]))
    rows = torch.tensor([7, 2, 2, 9])
    adv = engine.attack(rows, eps=8, steps=2)
    again = Engine(model, x, y, engine.cfg, device=CPU)  # the same seed: the same random starts
    pred = again.attack(rows, eps=8, steps=2, readout=top1)
    with torch.no_grad():
        assert adv.shape == (4, 3, 16, 16) and torch.equal(pred, model(adv).argmax(1))


def test_the_same_seed_gives_the_same_examples():
    model, x, y = _setup()
    cfg = AttackConfig(eps=8, steps=3, device="cpu")
    a = Engine(model, x, y, cfg, device=CPU).attack(eps=8, steps=3)
    b = Engine(model, x, y, cfg, device=CPU).attack(eps=8, steps=3)
    assert torch.equal(a, b)


def test_restarts_without_a_success_test_need_a_choice_and_take_the_plans_worst():
    model, x, y = _setup()
    threat = ThreatModel(loss_fn=lambda z, t: nn.functional.cross_entropy(z, t, reduction="sum"))
    engine = Engine(model, x, y, AttackConfig(eps=8, steps=2, restarts=3, device="cpu"), device=CPU, threat=threat)
    with pytest.raises(ValueError, match="choose"):
        engine.attack(eps=8, steps=2)
    seen = []

    def choose(runs, labels):
        seen.append(len(runs))
        return runs[-1]

    engine.attack(eps=8, steps=2, readout=fp32, choose=choose)
    assert seen == [3]


def test_mim_starts_at_the_clean_point():
    model, x, y = _setup()
    threat = ThreatModel(loss_fn=lambda z, t: nn.functional.cross_entropy(z, t, reduction="sum"),
                         success_fn=lambda z, t: z.argmax(1) != t)
    engine = Engine(model, x, y, AttackConfig(eps=8, steps=2, device="cpu"), device=CPU, threat=threat)
    with pytest.raises(ValueError, match="clean point"):
        engine.attack(eps=8, steps=2, method="mim")
    x_adv = engine.attack(eps=8, steps=2, method="mim", random_start=False, step_factor=1.0)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6


def test_bf16_precision_wraps_the_model_and_returns_fp32():
    model, x, _ = _setup(4)
    wrapped = with_precision(model, "bf16", CPU)
    assert isinstance(wrapped, Autocast) and wrapped.module is model
    assert with_precision(model, "fp32", CPU) is model
    out = wrapped(x)
    assert out.dtype == torch.float32 and not torch.equal(out, model(x))  # computed in bf16
