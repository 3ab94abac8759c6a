"""The CUDA paths: device choice, bf16 autocast, PGD, training, attacks, NCCL and SyncBatchNorm on a GPU.

Skipped without CUDA (this machine); `bash bench/gpu_check.sh OUTDIR` runs them on a GPU machine
(`pytest -m cuda`). Each compares the GPU against what the CPU tests already pin down: the same
attack verdicts within the suite's tolerance (max(1 pp, 2 samples); TF32 convolutions and bf16
flip samples that sit on a decision boundary, not the picture), fp32 outputs of a bf16 network,
and a model that learns. The 2-GPU test needs 2 GPUs and is skipped on one.
"""
import csv
import dataclasses
import json
import socket
import sys

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from torch import nn
from typer.testing import CliRunner

from attnrobust import distributed, training
from attnrobust.evaluation import evaluate_checkpoint
from attnrobust.attacks.pgd import pgd
from attnrobust.attacks.sanity import tolerance
from attnrobust.attacks.suite import AttackConfig
from attnrobust.checkpoint import load_model
from attnrobust.data.prepared import load_prepared
from attnrobust.experiment import parse_experiment
from attnrobust.methods import get_method
from attnrobust.models import build_model
from attnrobust.runtime import autocast_forward, resolve_device, resolve_precision
from attnrobust.tasks import task_for
from attnrobust.training import TrainConfig, train_experiment
from conftest import ROOT, write_separable_dataset

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CUDA, CPU = torch.device("cuda"), torch.device("cpu")
STANDARD = {"dataset": "gtsrb", "method": "standard", "model": "cnn", "model_args": {"width": 4}}
CFG = TrainConfig(epochs=3, batch_size=16, lr=0.01, weight_decay=0.0, seeds=[0], device="cuda", threads=1)
BF16_SAMPLES = 4  # verdicts bf16 may flip on 64-96 samples (tests/test_precision.py, CPU autocast)
HEADLINE = ("clean_acc", "fgsm_acc", "pgd_acc", "pgd_targeted_acc", "robust_acc")


def _write_dataset(out, n_train: int, n_test: int):
    """3 separable classes (colour of the central square), 16 px, in the real shard format."""
    return write_separable_dataset(out, n_train, n_test)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A standard cnn trained on the GPU with `precision: auto` (bf16 there): (prepared dir, model dir, summary)."""
    root = tmp_path_factory.mktemp("cuda")
    prepared = _write_dataset(root / "prepared", 96, 96)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # dvclive inspects the git repo around the cwd
        summary = train_experiment(parse_experiment("tiny", STANDARD, "test"), CFG, prepared, root / "model",
                                   root / "live")
    return prepared, root / "model", summary


def test_auto_picks_the_gpu_and_bf16():
    assert resolve_device("auto").type == "cuda" and resolve_device("cuda").type == "cuda"
    if torch.cuda.is_bf16_supported():  # Ampere and later
        assert resolve_precision("auto", CUDA) is torch.bfloat16
    assert resolve_precision("fp32", CUDA) is None


def test_each_torchrun_process_takes_its_own_gpu(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", str(torch.cuda.device_count() - 1))
    assert resolve_device("cuda") == torch.device("cuda", torch.cuda.device_count() - 1)


def test_autocast_runs_the_network_in_bf16_on_the_gpu_and_returns_fp32():
    torch.manual_seed(0)
    model = build_model("s3ta", num_classes=3, mean=[0.5] * 3, std=[0.25] * 3, width=4, glances=2).to(CUDA).eval()
    x = torch.rand(8, 3, 16, 16, device=CUDA)
    reference = model(x)
    inner = []
    model.trunk.register_forward_hook(lambda module, args, out: inner.append(out.dtype))
    autocast_forward(model, CUDA, "bf16")
    logits, maps = model.forward_with_attention(x)
    assert inner[-1] == torch.bfloat16 and logits.dtype == torch.float32 and logits.device.type == "cuda"
    assert all(m.dtype == torch.float32 for m in (maps if isinstance(maps, (list, tuple)) else [maps]))
    assert torch.allclose(model(x), reference, atol=0.05)
    x = x.requires_grad_(True)
    grad = torch.autograd.grad(F.cross_entropy(model(x), torch.arange(8, device=CUDA) % 3), x)[0]
    assert grad.dtype == torch.float32 and grad.abs().sum() > 0


def _robust(model, x, y, device, eps: float, random_start: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct after PGD-10 at ``eps`` levels, x_adv) on ``device``; random starts from one seeded CPU generator."""
    model, x, y = model.to(device), x.to(device), y.to(device)
    x_adv = pgd(model, x, y, eps=eps / 255, steps=10, step_size=2.5 * eps / 255 / 10, random_start=random_start,
                generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return (model(x_adv).argmax(1) == y).cpu(), x_adv


@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_on_the_gpu_gives_the_cpu_robust_accuracy(trained, random_start):
    prepared, model_dir, _ = trained
    model = load_model(model_dir)
    x, y, _ = load_prepared(prepared, "test")
    # the budget where the CPU's robust accuracy is nearest one half, so there is something to agree about
    eps, cpu = min(((e, _robust(model, x, y, CPU, e, random_start)[0]) for e in (4, 8, 16, 32)),
                   key=lambda pair: abs(float(pair[1].float().mean()) - 0.5))
    assert 0.1 < float(cpu.float().mean()) < 0.9, "no budget leaves a mid-range robust accuracy"
    gpu, x_adv = _robust(model, x, y, CUDA, eps, random_start)
    assert x_adv.device.type == "cuda"
    assert float((x_adv.cpu() - x).abs().max()) <= eps / 255 + 1e-6  # inside the eps-ball
    assert 0 <= float(x_adv.min()) <= float(x_adv.max()) <= 1  # and the image box
    n = len(y)
    assert abs(float(gpu.float().mean() - cpu.float().mean())) <= tolerance(n), (eps, gpu.sum(), cpu.sum())
    assert int((gpu != cpu).sum()) <= BF16_SAMPLES, f"{int((gpu != cpu).sum())} of {n} verdicts differ at eps {eps}"


def test_training_on_the_gpu_learns_and_writes_a_cpu_checkpoint(trained):
    _, model_dir, summary = trained
    assert summary["clean_acc"] > 0.9  # 3 separable classes; the CPU run reaches 1.0
    weights = torch.load(model_dir / "model.pt", weights_only=True)["state_dict"]
    assert all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.int64) for t in weights.values())


def test_bf16_adversarial_training_on_the_gpu_learns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prepared = _write_dataset(tmp_path / "prepared", 48, 24)
    exp = parse_experiment("tiny", {**STANDARD, "method": "pgd_at", "train_steps": 2}, "test")
    summary = train_experiment(exp, dataclasses.replace(CFG, precision="bf16"), prepared, tmp_path / "m",
                               tmp_path / "live")
    assert summary["clean_acc"] > 0.8  # fp32 on the CPU reaches 1.0 (tests/test_precision.py)


def _verdicts(path) -> dict[str, list[str]]:
    rows = list(csv.DictReader(open(path / "per_sample.csv")))
    return {k: [r[k] for r in rows] for k in rows[0] if k.endswith("_correct")}


@pytest.mark.parametrize("device, precision", [("cuda", "fp32"), ("cuda", "bf16")])
def test_the_attack_suite_on_the_gpu_agrees_with_the_cpu(trained, tmp_path, device, precision):
    prepared, model_dir, _ = trained
    attack = AttackConfig(eps=8, steps=5, n_samples=0, eps_sweep=[2, 4], steps_sweep=[2], race_steps=[],
                          device="cpu", precision="fp32")
    cpu = evaluate_checkpoint("tiny", model_dir, prepared, tmp_path / "cpu", attack)
    gpu = evaluate_checkpoint("tiny", model_dir, prepared, tmp_path / "gpu",
                              dataclasses.replace(attack, device=device, precision=precision))
    n = cpu["n"]
    allowed = tolerance(n) if precision == "fp32" else max(tolerance(n), BF16_SAMPLES / n)
    for key in HEADLINE:
        assert abs(gpu[key] - cpu[key]) <= allowed, (key, cpu[key], gpu[key])
    a, b = _verdicts(tmp_path / "cpu"), _verdicts(tmp_path / "gpu")
    assert a.keys() == b.keys() and "worst_correct" in a
    for column in a:
        assert sum(p != q for p, q in zip(a[column], b[column], strict=True)) <= BF16_SAMPLES, column


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_process_nccl_group_trains_with_ddp_and_syncbatchnorm_as_without(tmp_path, monkeypatch):
    """The library's torchrun path on one GPU: NCCL joins, BatchNorm becomes SyncBatchNorm under DDP,
    and one epoch gives the weights of the plain one-process loop (a group of one sums nothing)."""
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0",
                       "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    prepared = _write_dataset(tmp_path / "prepared", 48, 24)
    exp = parse_experiment("tiny", STANDARD, "test")
    cfg, task, method = dataclasses.replace(CFG, precision="fp32"), task_for(exp), get_method("standard")
    data = task.load(prepared, "train")
    device = resolve_device("cuda")
    with distributed.process_group(device):
        assert dist.get_backend() == "nccl" and distributed.world_size() == 1
        total = torch.ones(1, device=device)
        dist.all_reduce(total)
        assert float(total) == 1.0
        plain, _ = training.build_state(exp, cfg, task, data, device, steps=3)
        synced, _ = training.build_state(exp, cfg, task, data, device, steps=3)
        ddp_method = training._distributed(synced, method, cfg, device)
        assert any(isinstance(m, nn.SyncBatchNorm) for m in synced.model.modules())
        assert not any(type(m) is nn.BatchNorm2d for m in synced.model.modules())
        for state, m in ((plain, method), (synced, ddp_method)):
            training.train_one_epoch(state, m, exp.method_config, data, task, 16, device, "epoch")
    a, b = plain.model.state_dict(), synced.model.state_dict()
    assert a.keys() == b.keys()  # SyncBatchNorm keeps BatchNorm's parameters and buffers
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) < 1e-5


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_two_gpus_train_through_torchrun_like_one(tmp_path, monkeypatch, capfd):
    """nproc 2 on CUDA: NCCL, SyncBatchNorm over the global batch, the stage's own launcher. Not bit-identical
    to one process (another summation order, magnified by Adam; tests/test_distributed.py). The bound
    tells synced from unsynced BatchNorm: the same run on the CPU (gloo, each process normalising its own
    half) differs from one process by 0.039 in its weights. Not yet run on 2 GPUs."""
    sys.path.insert(0, str(ROOT / "stages"))
    import train as train_stage

    monkeypatch.chdir(tmp_path)
    prepared = _write_dataset(tmp_path / "prepared", 48, 24)
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    weights, accuracy = {}, {}
    for nproc in (1, 2):
        params = tmp_path / f"params{nproc}.yaml"
        train = {**base["train"], "epochs": 2, "batch_size": 16, "lr": 0.01, "device": "cuda", "precision": "fp32",
                 "threads": 1, "nproc": nproc}
        params.write_text(yaml.safe_dump({"train": train, "experiments": {"tiny": STANDARD}}))
        out, live = tmp_path / f"model{nproc}", tmp_path / f"live{nproc}"
        result = CliRunner().invoke(train_stage.app, ["--experiment", "tiny", "--prepared", str(prepared),
                                                      "--out", str(out), "--live", str(live), "--params", str(params)])
        assert result.exit_code == 0, (result.output, capfd.readouterr().err[-3000:])
        weights[nproc] = torch.load(out / "model.pt", weights_only=True)["state_dict"]
        accuracy[nproc] = json.loads((live / "metrics.json").read_text())["test"]["clean_acc"]
    assert max(float((weights[1][k].float() - weights[2][k].float()).abs().max()) for k in weights[1]) < 1e-2
    assert abs(accuracy[1] - accuracy[2]) <= tolerance(24)
