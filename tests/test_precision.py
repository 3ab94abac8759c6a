"""bf16 autocast: only inside the network, fp32 outputs, and attack results that agree with fp32.

CUDA is where ``precision: auto`` turns bf16 on; the agreement check runs the same code path on
the CPU (``precision: bf16`` forces CPU autocast), so it runs everywhere.
"""
import csv
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from attnrobust.evaluation import evaluate_checkpoint
from attnrobust.attacks.suite import AttackConfig
from attnrobust.config import build
from attnrobust.errors import UserError
from attnrobust.experiment import parse_experiment
from attnrobust.models import build_model
from attnrobust.runtime import autocast_forward, resolve_precision
from attnrobust.training import TrainConfig, train_experiment

from conftest import write_separable_dataset

CPU = torch.device("cpu")
HEADLINE = ("clean_acc", "fgsm_acc", "pgd_acc", "pgd_targeted_acc", "robust_acc")
TOLERANCE_SAMPLES = 4  # bf16 may flip samples that sit on a decision boundary, not the picture
CFG = TrainConfig(epochs=3, batch_size=16, lr=0.01, weight_decay=0.0, seeds=[0], device="cpu", threads=1)


def test_auto_is_fp32_on_cpu_and_bf16_only_when_asked():
    assert resolve_precision("auto", CPU) is None and resolve_precision("fp32", CPU) is None
    assert resolve_precision("bf16", CPU) is torch.bfloat16
    with pytest.raises(UserError, match="precision"):
        resolve_precision("fp16", CPU)
    with pytest.raises(UserError, match="p.yaml: attack.precision: 'fp16' is not one of"):
        build(AttackConfig, {**dataclasses.asdict(AttackConfig(eps=8, steps=2)), "precision": "fp16"}, "p.yaml: attack")
    assert build(TrainConfig, {**dataclasses.asdict(CFG), "precision": "bf16"}, "p.yaml: train").precision == "bf16"


def _s3ta():
    torch.manual_seed(0)
    return build_model("s3ta", num_classes=3, mean=[0.5] * 3, std=[0.25] * 3, width=4, glances=2).eval()


def test_autocast_runs_the_network_in_bf16_and_returns_fp32():
    model, x = _s3ta(), torch.rand(4, 3, 16, 16)
    reference, keys = model(x), list(model.state_dict())
    inner = []
    model.trunk.register_forward_hook(lambda module, args, out: inner.append(out.dtype))
    assert autocast_forward(model, CPU, "bf16") is model
    logits, maps = model.forward_with_attention(x)
    assert inner[-1] == torch.bfloat16 and logits.dtype == torch.float32
    assert all(m.dtype == torch.float32 for m in (maps if isinstance(maps, (list, tuple)) else [maps]))
    assert model(x).dtype == torch.float32 and torch.allclose(model(x), reference, atol=0.05)
    assert list(model.state_dict()) == keys  # the checkpoint format does not change
    model.glances = 1  # attributes stay the model's own (the S3TA race sets them)
    assert model(x).shape == (4, 3)
    x = x.requires_grad_(True)
    grad = torch.autograd.grad(F.cross_entropy(model(x), torch.tensor([0, 1, 2, 0])), x)[0]
    assert grad.dtype == torch.float32 and grad.abs().sum() > 0


def test_fp32_leaves_the_model_untouched():
    model = _s3ta()
    autocast_forward(model, CPU, "fp32")
    assert "forward" not in vars(model) and "forward_with_attention" not in vars(model)


@pytest.fixture
def prepared(tmp_path, monkeypatch):
    """3 separable classes, 64 test images (enough for a tolerance of a few samples)."""
    monkeypatch.chdir(tmp_path)  # dvclive inspects the git repo around the cwd
    return write_separable_dataset(tmp_path / "prepared", 48, 64)


def _verdicts(path):
    with open(path / "per_sample.csv") as f:
        return list(csv.DictReader(f))


def test_bf16_attacks_agree_with_fp32_within_a_few_samples(prepared, tmp_path):
    exp = parse_experiment("tiny", {"dataset": "gtsrb", "method": "standard", "model": "cnn",
                                    "model_args": {"width": 4}}, "test")
    train_experiment(exp, CFG, prepared, tmp_path / "model", tmp_path / "live")
    attack = AttackConfig(eps=8, steps=5, n_samples=0, eps_sweep=[2, 4], steps_sweep=[2], race_steps=[],
                          device="cpu", precision="fp32")
    fp32 = evaluate_checkpoint("tiny", tmp_path / "model", prepared, tmp_path / "fp32", attack)
    bf16 = evaluate_checkpoint("tiny", tmp_path / "model", prepared, tmp_path / "bf16",
                               dataclasses.replace(attack, precision="bf16"))
    n = fp32["n"]
    assert n == 64 and fp32["pgd_acc"] < fp32["clean_acc"]  # the attack does something to agree about
    for key in HEADLINE:
        assert abs(bf16[key] - fp32[key]) <= TOLERANCE_SAMPLES / n, (key, fp32[key], bf16[key])
    rows_32, rows_16 = _verdicts(tmp_path / "fp32"), _verdicts(tmp_path / "bf16")
    for column in ("clean_correct", "fgsm_correct", "pgd_correct", "pgd_targeted_correct", "worst_correct"):
        differ = sum(a[column] != b[column] for a, b in zip(rows_32, rows_16, strict=True))
        assert differ <= TOLERANCE_SAMPLES, (column, differ)


def test_bf16_training_learns_like_fp32(prepared, tmp_path):
    bf16 = train_experiment(parse_experiment("tiny", {"dataset": "gtsrb", "method": "pgd_at", "model": "cnn",
                                                      "model_args": {"width": 4}, "train_steps": 2}, "test"),
                            dataclasses.replace(CFG, precision="bf16"), prepared, tmp_path / "m", tmp_path / "live")
    assert bf16["clean_acc"] > 0.8  # 3 separable classes; fp32 reaches 1.0 here
