"""Every attack param means the same thing in every evaluation plan.

`attack.restarts` and `attack.eot_samples` must reach every gradient attack of the image suite,
the per-head attacks, the S3TA race, the report's examples (here) and the detector's attacks
(tests/test_iqa_kd.py); the video suite has its own test (tests/test_video_models.py). A spy
replaces `pgd` (and the per-head MIM) in every module that calls it and records each call:
with ``eot_samples=3`` every call must average 3 passes; with ``restarts=2`` every attack with a
random start must restart (attacks without one, FGSM, BIM and MIM, are the same every time).
"""
from __future__ import annotations

import importlib

import pytest
import torch

from attnrobust.attacks.suite import AttackConfig
from attnrobust.models import build_model

SPIED = ("attnrobust.attacks.pgd", "attnrobust.attacks.suite", "attnrobust.attacks.heads",
         "attnrobust.attacks.race", "attnrobust.attacks.examples", "attnrobust.tasks")
KW = {"mean": [0.5] * 3, "std": [0.25] * 3}


def _cfg(**kw) -> AttackConfig:
    return AttackConfig(**{"eps": 8, "steps": 2, "n_samples": 0, "batch_size": 16, "eps_sweep": [4],
                           "steps_sweep": [1], "race_glances": [1, 2], "race_steps": [2], "race_samples": 0,
                           "head_eps": [8], "head_steps": 2, "attention_examples": 3, "suite": "fast",
                           "device": "cpu", **kw})


def _spy(monkeypatch) -> list[dict]:
    """Record the keyword arguments of every pgd / mim call from now on."""
    calls: list[dict] = []
    pgd_module, heads = importlib.import_module(SPIED[0]), importlib.import_module("attnrobust.attacks.heads")
    real_pgd, real_mim = pgd_module.pgd, heads.mim

    def pgd_spy(*args, **kwargs):
        calls.append({"attack": "pgd", **kwargs})
        return real_pgd(*args, **kwargs)

    def mim_spy(*args, **kwargs):
        calls.append({"attack": "mim", "random_start": False, **kwargs})
        return real_mim(*args, **kwargs)

    for name in SPIED:
        module = importlib.import_module(name)
        if hasattr(module, "pgd"):
            monkeypatch.setattr(module, "pgd", pgd_spy)
    monkeypatch.setattr(heads, "mim", mim_spy)
    return calls


def _data(n=8, size=16, classes=3):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, size, size, generator=g), torch.arange(n) % classes


def _suite(cfg, monkeypatch):
    from attnrobust.attacks.suite import run_suite

    torch.manual_seed(0)
    model = build_model("cnn", num_classes=3, width=4, **KW).eval()
    x, y = _data()
    calls = _spy(monkeypatch)
    run_suite(model, x, y, cfg, num_classes=3, device=torch.device("cpu"))
    return calls


def _heads(cfg, monkeypatch):
    from attnrobust.attacks.heads import run_head_attacks
    from attnrobust.attacks.suite import run_suite

    torch.manual_seed(0)
    model = build_model("protoattn", num_classes=3, width=4, proto_dim=4, prototypes_per_class=1, **KW).eval()
    x, y = _data()
    full, columns = run_suite(model, x, y, cfg, num_classes=3, device=torch.device("cpu"))
    calls = _spy(monkeypatch)  # the head attacks only (they run the suite again on the other head)
    run_head_attacks(model, x, y, cfg, full, columns, device=torch.device("cpu"))
    return calls


def _race(cfg, monkeypatch):
    from attnrobust.attacks.race import run_race

    torch.manual_seed(0)
    model = build_model("s3ta", num_classes=3, width=4, key_dim=4, value_dim=4, hidden=16, glances=2, **KW).eval()
    x, y = _data(size=32)
    calls = _spy(monkeypatch)
    run_race(model, x, y, cfg, num_classes=3, device=torch.device("cpu"))
    return calls


def _examples(cfg, monkeypatch):
    from attnrobust.attacks.examples import adversarial_examples

    torch.manual_seed(0)
    model = build_model("cnn", num_classes=3, width=4, **KW).eval()
    x, y = _data()
    calls = _spy(monkeypatch)
    adversarial_examples(model, x, y, cfg, num_classes=3, device=torch.device("cpu"))
    return calls


PLANS = {"image suite": _suite, "per-head attacks": _heads, "S3TA race": _race, "report examples": _examples}


@pytest.mark.parametrize("plan", list(PLANS))
def test_eot_samples_reaches_every_attack_of_every_plan(plan, monkeypatch):
    calls = PLANS[plan](_cfg(eot_samples=3), monkeypatch)
    assert calls and [c.get("eot_samples", 1) for c in calls] == [3] * len(calls), plan


@pytest.mark.parametrize("plan", list(PLANS))
def test_restarts_reach_every_random_start_attack_of_every_plan(plan, monkeypatch):
    calls = PLANS[plan](_cfg(restarts=2), monkeypatch)
    random_start = [c for c in calls if c.get("random_start", True)]
    assert random_start and [c.get("restarts", 1) for c in random_start] == [2] * len(random_start), plan
    assert all(c.get("restarts", 1) == 1 for c in calls if not c.get("random_start", True))  # nothing to vary
