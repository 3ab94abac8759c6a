"""Every attack param means the same thing in every evaluation plan.

The plans are the image suite, its threat model B (foreground only), the per-head attacks, the
S3TA race, the report's examples, the video suite and the detector's attacks. Each runs every
gradient attack through :class:`attnrobust.attacks.engine.Engine`; a spy replaces the engine's
``pgd`` and ``mim`` and records each call, and one test per param checks that it reaches every
plan: eps, steps, step size (``step_factor``), random start, restarts, EOT, precision and nproc
(each process attacks only its share of the rows).
"""
from __future__ import annotations

import importlib
import math
import types
from types import SimpleNamespace

import pytest
import torch

import attnrobust.attacks.engine as engine_module
from attnrobust.attacks.engine import Autocast
from attnrobust.attacks.suite import AttackConfig
from attnrobust.models import build_model
from attnrobust.units import levels_to_input

KW = {"mean": [0.5] * 3, "std": [0.25] * 3}
CPU = torch.device("cpu")
C, D, T = 4, 6, 8  # video: classes, feature size, frames
REAL = {"pgd": engine_module.pgd, "mim": engine_module.mim}  # a second spy must not wrap the first


def _cfg(**kw) -> AttackConfig:
    return AttackConfig(**{"eps": 8, "steps": 2, "n_samples": 0, "batch_size": 16, "eps_sweep": [4],
                           "steps_sweep": [1], "race_glances": [1, 2], "race_steps": [2], "race_samples": 0,
                           "head_eps": [8], "head_steps": 2, "attention_examples": 3, "suite": "fast",
                           "device": "cpu", **kw})


def _spy(monkeypatch) -> list[dict]:
    """Record every attack the engine runs from now on: its keyword arguments, the model it attacks,
    the rows (``n``) and the attack (``pgd`` / ``mim``)."""
    calls: list[dict] = []

    def spy(name, real):
        def attack(model, x, y, **kwargs):
            calls.append({"attack": name, "model": model, "n": len(x), **kwargs})
            return real(model, x, y, **kwargs)
        return attack

    for name, real in REAL.items():
        monkeypatch.setattr(engine_module, name, spy(name, real))
    return calls


def _images(n=8, size=16, classes=3):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, size, size, generator=g), torch.arange(n) % classes


def _cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("cnn", num_classes=3, width=4, **KW).eval()


def _spied(plan, cfg, monkeypatch):
    """The engine calls of ``plan(model, x, y, cfg, num_classes=3, device=CPU)`` on the seeded cnn."""
    model, (x, y) = _cnn(), _images()
    calls = _spy(monkeypatch)
    plan(model, x, y, cfg, num_classes=3, device=CPU)
    return calls


def _suite(cfg, monkeypatch):
    from attnrobust.attacks.suite import run_suite

    return _spied(run_suite, cfg, monkeypatch)


def _foreground_only(cfg, monkeypatch):
    from attnrobust.attacks.suite import run_foreground_only, run_suite

    model, (x, y) = _cnn(), _images()
    full, columns = run_suite(model, x, y, cfg, num_classes=3, device=CPU)
    foreground = torch.zeros(len(y), 1, 16, 16)
    foreground[..., 4:12, 4:12] = 1
    calls = _spy(monkeypatch)
    run_foreground_only(model, x, y, cfg, full, columns, perturb_mask=foreground, device=CPU)
    return calls


def _heads(cfg, monkeypatch):
    from attnrobust.attacks.heads import run_head_attacks
    from attnrobust.attacks.suite import run_suite

    torch.manual_seed(0)
    model = build_model("protoattn", num_classes=3, width=4, proto_dim=4, prototypes_per_class=1, **KW).eval()
    x, y = _images()
    full, columns = run_suite(model, x, y, cfg, num_classes=3, device=CPU)
    calls = _spy(monkeypatch)  # the head attacks only (they run the suite again on the other head)
    run_head_attacks(model, x, y, cfg, full, columns, device=CPU)
    return calls


def _race(cfg, monkeypatch):
    from attnrobust.attacks.race import run_race

    torch.manual_seed(0)
    model = build_model("s3ta", num_classes=3, width=4, key_dim=4, value_dim=4, hidden=16, glances=2, **KW).eval()
    x, y = _images(size=32)
    calls = _spy(monkeypatch)
    run_race(model, x, y, cfg, num_classes=3, device=CPU)
    return calls


def _examples(cfg, monkeypatch):
    from attnrobust.attacks.examples import adversarial_examples

    return _spied(adversarial_examples, cfg, monkeypatch)


def _video(cfg, monkeypatch):
    from attnrobust.attacks.video_suite import run_video_suite
    from attnrobust.tasks import VIDEO

    g = torch.Generator().manual_seed(0)
    lengths = T - torch.arange(8) % 3
    valid = (torch.arange(T)[None, :] < lengths[:, None]).float()
    x = torch.cat([(torch.rand(8, T, D, generator=g) * 3.8 - 1.9) * valid[..., None], valid[..., None]], dim=-1)
    y = (torch.rand(8, C, generator=g) < 0.4).float()
    y[torch.arange(8), torch.arange(8) % C] = 1.0
    torch.manual_seed(0)
    model = build_model("video_transformer", num_classes=C, feature_dim=D, max_frames=T, d_model=16, heads=2,
                        layers=1, dropout=0.0).eval()
    calls = _spy(monkeypatch)
    run_video_suite(model, x, y, cfg, num_classes=C, device=CPU, task=VIDEO)
    return calls


def _detector(cfg, monkeypatch):
    from attnrobust.detect.detector import IQAKDDetector, LogisticHead
    from attnrobust.detect.evaluate import _adaptive, _attack_conditions, _Conditions

    torch.manual_seed(0)
    teacher = build_model("cnn", num_classes=3, width=4, **KW).eval()
    student = build_model("cnn", num_classes=3, width=4, **KW).eval()
    x, y = _images(size=32)
    detector = IQAKDDetector(teacher, student, LogisticHead(1), "nss+kd")
    with torch.no_grad():
        k = detector.features_and_logits(x[:1])[0].shape[1]
    detector.head = LogisticHead(k)
    detector.head.weight.copy_(torch.linspace(-1, 1, k))  # any score that depends on the input
    run = _Conditions(detector, x, y, CPU, cfg.batch_size)
    spec = SimpleNamespace(adaptive=SimpleNamespace(steps=2, weights=[1.0, 10.0]))
    calls = _spy(monkeypatch)
    generator, starts = torch.Generator().manual_seed(cfg.seed), torch.Generator().manual_seed(cfg.seed + 1)
    _, plain = _attack_conditions(run, teacher, cfg, 3, generator, starts)
    _adaptive(run, cfg, spec, plain, starts)
    return calls


PLANS = {"image suite": _suite, "threat model B": _foreground_only, "per-head attacks": _heads,
         "S3TA race": _race, "report examples": _examples, "video suite": _video, "detector": _detector}
UNIT = {"video suite": levels_to_input(1, "yt8m")}  # input units of one level; images: 1/255
OWN_STEPS = {"S3TA race": "race_steps", "per-head attacks": "head_steps"}  # plans whose attacks define their steps


def _values(v) -> list[float]:
    return [float(t) for t in torch.as_tensor(v).flatten().unique()]


@pytest.mark.parametrize("plan", list(PLANS))
def test_eps_reaches_every_plan(plan, monkeypatch):
    unit = UNIT.get(plan, 1 / 255)
    eps = {e for c in PLANS[plan](_cfg(eps=6, head_eps=[6]), monkeypatch) for e in _values(c["eps"])}
    assert any(math.isclose(e, 6 * unit, rel_tol=1e-6) for e in eps), (plan, eps)
    assert max(eps) <= 255 * unit * 1.0001  # the whole box at most: no budget beyond the sweep's


@pytest.mark.parametrize("plan", list(PLANS))
def test_steps_reach_every_plan(plan, monkeypatch):
    cfg = _cfg(steps=3, race_steps=[3], head_steps=3)
    steps = {c["steps"] for c in PLANS[plan](cfg, monkeypatch)}
    assert 3 in steps, (plan, steps)
    if plan in OWN_STEPS:  # the plan's own steps param sets them (the heads' suite runs attack.steps too)
        other = {c["steps"] for c in PLANS[plan](_cfg(steps=3, race_steps=[4], head_steps=4), monkeypatch)}
        assert 4 in other and (plan != "S3TA race" or 3 not in other), (plan, other)


@pytest.mark.parametrize("plan", list(PLANS))
def test_step_factor_sets_the_step_size_of_every_madry_rule_attack(plan, monkeypatch):
    """step = step_factor * eps / steps for every multi-step attack of a plan that follows Madry's rule."""
    calls = [c for c in PLANS[plan](_cfg(step_factor=1.5), monkeypatch) if c["steps"] > 1]
    assert calls, plan
    ratios = {round(float((torch.as_tensor(c["step_size"]) * c["steps"] / torch.as_tensor(c["eps"])).mean()), 4)
              for c in calls}
    if plan == "S3TA race":  # Xie et al.'s step, max(race_step_size, eps / steps)
        assert 1.5 not in ratios, (plan, ratios)
    elif plan == "per-head attacks":  # the official steps, and the whole suite on the other head
        assert 1.5 in ratios and len(ratios) > 1, (plan, ratios)
    else:
        assert ratios == {1.5}, (plan, ratios)


@pytest.mark.parametrize("plan", list(PLANS))
def test_random_start_false_reaches_every_plan(plan, monkeypatch):
    on = PLANS[plan](_cfg(), monkeypatch)
    off = PLANS[plan](_cfg(random_start=False, restarts=2), monkeypatch)
    assert any(c.get("random_start") for c in on), plan
    assert off and not any(c.get("random_start", False) for c in off), plan
    assert all(c.get("restarts", 1) == 1 for c in off)  # a restart from the clean point would repeat the attack


@pytest.mark.parametrize("plan", list(PLANS))
def test_eot_samples_reaches_every_attack_of_every_plan(plan, monkeypatch):
    calls = PLANS[plan](_cfg(eot_samples=3), monkeypatch)
    assert calls and [c.get("eot_samples", 1) for c in calls] == [3] * len(calls), plan


@pytest.mark.parametrize("plan", list(PLANS))
def test_restarts_reach_every_random_start_attack_of_every_plan(plan, monkeypatch):
    """With a success test, pgd restarts the points still standing; the video suite (no per-sample
    success) runs every random-start attack once per restart and keeps the worst per video."""
    once = PLANS[plan](_cfg(), monkeypatch)
    calls = PLANS[plan](_cfg(restarts=2), monkeypatch)
    random_start = [c for c in calls if c.get("random_start")]
    assert random_start, plan
    if plan == "video suite":
        assert len(random_start) == 2 * len([c for c in once if c.get("random_start")])
        assert all(c.get("restarts", 1) == 1 for c in calls)
    else:
        # pgd_full (the detector's PGD without early stop) runs once: no success test to restart on
        restarting = [c for c in random_start if getattr(c.get("success_fn"), "__name__", "") != "_never"]
        assert restarting and all(c["restarts"] == 2 for c in restarting), plan
    assert all(c.get("restarts", 1) == 1 for c in calls if not c.get("random_start"))  # nothing to vary


@pytest.mark.parametrize("plan", list(PLANS))
def test_precision_reaches_every_attack_of_every_plan(plan, monkeypatch):
    """precision: bf16 runs every attack's forward passes under bf16 autocast (fp32 outputs); fp32 not."""
    bf16 = PLANS[plan](_cfg(precision="bf16"), monkeypatch)
    assert bf16 and all(isinstance(c["model"], Autocast) and c["model"].dtype == torch.bfloat16 for c in bf16), plan
    fp32 = PLANS[plan](_cfg(precision="fp32"), monkeypatch)
    assert not any(isinstance(c["model"], Autocast) for c in fp32)


@pytest.mark.parametrize("plan", list(PLANS))
def test_every_process_attacks_only_its_share_in_every_plan(plan, monkeypatch):
    """nproc: as process 0 of 2, every plan attacks the first half of each attack's rows; the other
    half comes back from process 1 (here: a copy, so the plan runs on). The report's pictures are
    drawn by process 0 alone, which attacks every row."""
    shares: list[tuple[int, int]] = []
    fake = types.ModuleType("fake_distributed")

    def shard(n: int) -> slice:
        shares.append((n, (n + 1) // 2))
        return slice(0, (n + 1) // 2)

    def gather_rows(local):
        n = shares[-1][0]
        return torch.cat([local, local, local])[:n] if n else local

    fake.shard, fake.gather_rows, fake.rank_seed = shard, gather_rows, lambda seed: seed
    monkeypatch.setattr(engine_module, "distributed", fake)
    calls = PLANS[plan](_cfg(), monkeypatch)
    assert calls, plan
    if plan == "report examples":
        assert not shares and sum(c["n"] for c in calls) == 2 * 3  # untargeted + targeted on its 3 samples
    else:
        assert shares and sum(c["n"] for c in calls) <= sum(half for _, half in shares), plan


def test_every_attack_of_the_evaluation_runs_through_the_engine():
    """No evaluation module calls pgd, fgsm or mim itself (training's PGD lives in tasks.py)."""
    plans = ("attacks.suite", "attacks.video_suite", "attacks.heads", "attacks.race", "attacks.examples",
             "detect.evaluate", "evaluation")
    for name in plans:
        assert not {"pgd", "fgsm", "mim"} & set(vars(importlib.import_module(f"attnrobust.{name}"))), name
