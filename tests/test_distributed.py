"""Several processes through torchrun (gloo on the CPU, 2 processes, 1 thread each): the stages
give what one process gives, resume, and fail with one clear message.

Why training on 2 processes is not bit-identical to 1: DDP sums the two halves' gradients where
one process sums the whole batch (another floating-point order), and Adam's normalisation
magnifies such last-bit differences in coordinates whose gradient is near zero. The video
Transformer here has no BatchNorm and no dropout, so nothing else differs (with BatchNorm on the
CPU each process would normalise with its own half's statistics, see training._distributed).
Attacks on 2 processes draw their own random starts per process, so only the deterministic
columns (labels, clean, FGSM) are identical; accuracies agree within the suite's tolerance.
"""
import csv
import json
import os
import signal
import sys

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from attnrobust import distributed
from attnrobust.attacks.autoattack import combine_shares
from attnrobust.evaluation import evaluate_checkpoint
from attnrobust.attacks.sanity import tolerance
from attnrobust.attacks.suite import AttackConfig
from attnrobust.config import load_section
from attnrobust.errors import UserError
from attnrobust.experiment import load_experiment
from attnrobust.io import save_npz, write_json
from attnrobust.training import TrainConfig, train_experiment
from conftest import ROOT

sys.path.insert(0, str(ROOT / "stages"))
import attack as attack_stage  # noqa: E402
import train as train_stage  # noqa: E402

runner = CliRunner()

VIDEO_MODEL = {"d_model": 16, "heads": 2, "layers": 1, "dropout": 0.0}  # no BatchNorm, no dropout
EXPERIMENTS = {
    "clip": {"dataset": "video", "method": "standard", "model": "video_transformer", "model_args": VIDEO_MODEL},
    # training-time PGD inside the DDP forward, random starts per process, forward_with_attention
    "clip_art": {"dataset": "video", "method": "a_art", "model": "video_transformer", "model_args": VIDEO_MODEL,
                 "train_steps": 2},
    "tiny": {"dataset": "gtsrb", "method": "standard", "model": "cnn", "model_args": {"width": 4}},
}


@pytest.fixture(autouse=True)
def _one_thread(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # dvclive inspects the git repo around the cwd
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # 2 processes on a shared 2-core machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _params(tmp_path, nproc: int, **attack) -> str:
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    p = {"train": {**base["train"], "epochs": 2, "batch_size": 8, "lr": 0.01, "device": "cpu", "threads": 1,
                   "nproc": nproc},
         "attack": {**base["attack"], "n_samples": 0, "steps": 3, "eps_sweep": [4], "steps_sweep": [1],
                    "race_steps": [], "head_eps": [], "device": "cpu", "nproc": nproc, **attack},
         "experiments": EXPERIMENTS}
    path = tmp_path / f"params{nproc}.yaml"
    path.write_text(yaml.safe_dump(p))
    return str(path)


@pytest.fixture
def video_dir(tmp_path):
    """Tiny YouTube-8M-style features: 4 classes, <= 6 frames of 8 dims; a label shows as a bump in its
    own dims in one frame. 25 training clips in batches of 8: the last batch has 1 clip, so one of 2
    processes has an empty share (the stand-in row, weighted 0)."""
    rng = np.random.default_rng(0)
    out = tmp_path / "video"
    out.mkdir()

    def split(name: str, n: int) -> int:
        labels, rgb = np.zeros((n, 4), np.uint8), rng.integers(100, 156, (n, 6, 8)).astype(np.uint8)
        frames = rng.integers(3, 7, n)
        for i in range(n):
            for k in rng.choice(4, size=rng.integers(1, 3), replace=False):
                labels[i, k] = 1
                rgb[i, rng.integers(0, frames[i]), 2 * k:2 * k + 2] = 250
            rgb[i, frames[i]:] = 0
        save_npz(out / f"{name}-000.npz", rgb=rgb, num_frames=frames.astype(np.int64), labels=labels,
                 ids=np.asarray([f"{name}{i}" for i in range(n)], dtype=str))
        return n

    write_json(out / "meta.json", {"splits": {"train": split("train", 25), "test": split("test", 12)},
                                   "classes": ["a", "b", "c", "d"]})
    return out


def _stage(app, *options) -> None:
    """A stage as a user runs it, in this process: with nproc 2 its launcher starts 2 processes."""
    result = runner.invoke(app, [str(o) for o in options])
    assert result.exit_code == 0, (result.output, result.exception)


def _weights(model_dir):
    return torch.load(model_dir / "model.pt", weights_only=True)["state_dict"]


def _train_one_process(params: str, experiment: str, prepared, out) -> dict:
    exp = load_experiment(params, experiment)
    return train_experiment(exp, load_section(params, "train", TrainConfig), prepared, out, out.parent / "live1")


def test_two_processes_train_the_model_one_process_trains(tmp_path, video_dir, capfd):
    one = _train_one_process(_params(tmp_path, 1), "clip", video_dir, tmp_path / "one")
    capfd.readouterr()
    _stage(train_stage.app, "--experiment", "clip", "--prepared", video_dir, "--out", tmp_path / "two",
           "--live", tmp_path / "live2", "--resume", tmp_path / "resume.pt", "--params", _params(tmp_path, 2))
    assert capfd.readouterr().err.count("epoch 2/2") == 1  # process 0 reports, once
    w1, w2 = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-3  # measured 1.8e-4; weights are O(1)
    live = json.loads((tmp_path / "live2" / "metrics.json").read_text())
    assert live["train"]["loss"] == pytest.approx(one["train_loss"], rel=1e-5)
    assert live["test"]["clean_gap"] == pytest.approx(one["clean_gap"], abs=1e-4)
    assert not (tmp_path / "resume.pt").exists()


CRASH_IN_SECOND_EPOCH = """
import sys
from pathlib import Path

import torch

from attnrobust import distributed, training
from attnrobust.config import load_section
from attnrobust.experiment import load_experiment

params, prepared, out, live, resume = map(Path, sys.argv[1:])
exp = load_experiment(params, "clip_art")
cfg = training.experiment_config(exp, load_section(params, "train", training.TrainConfig))
real, calls = training.train_one_epoch, []


def crash_in_second_epoch(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        sys.exit(3)  # killed mid-run, every process
    return real(*args, **kwargs)


training.train_one_epoch = crash_in_second_epoch
with distributed.process_group(torch.device("cpu")):
    training.train_experiment(exp, cfg, prepared, out, live, resume_file=resume)
"""


def test_two_process_training_resumes_to_the_same_model(tmp_path, video_dir, capfd):
    params, resume = _params(tmp_path, 2), tmp_path / "resume.pt"
    train = ("--experiment", "clip_art", "--prepared", video_dir, "--params", params)
    _stage(train_stage.app, *train, "--out", tmp_path / "full", "--live", tmp_path / "live_full")
    script = tmp_path / "crash.py"
    script.write_text(CRASH_IN_SECOND_EPOCH)
    options = [params, video_dir, tmp_path / "resumed", tmp_path / "live_r", resume]
    capfd.readouterr()
    assert distributed.launch(script, options, 2, torch.device("cpu")) == 3
    assert "of the torchrun launch (2 per machine) failed with exit status 3" in capfd.readouterr().err
    assert resume.is_file() and not (tmp_path / "resumed" / "model.pt").exists()
    generators = torch.load(resume, weights_only=True)["state"]["rank_generators"]
    assert len(generators) == 2 and not torch.equal(*generators)  # each process draws its own random starts
    _stage(train_stage.app, *train, "--out", tmp_path / "resumed", "--live", tmp_path / "live_r", "--resume", resume)
    assert "resuming from" in capfd.readouterr().err
    full, resumed = _weights(tmp_path / "full"), _weights(tmp_path / "resumed")
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def _columns(path) -> dict[str, list[str]]:
    rows = list(csv.DictReader(open(path)))
    return {k: [r[k] for r in rows] for k in rows[0]}


def test_two_processes_attack_as_one_process(tmp_path, prepared_dir, monkeypatch):
    _train_one_process(_params(tmp_path, 1), "tiny", prepared_dir, tmp_path / "model")
    attack = {"eps": 4, "suite": "standard", "aa_from": "clean", "aa_n_samples": 9, "aa_square_queries": 20,
              "aa_attacks": ["apgd_ce", "apgd_t", "fab_t", "square"], "race_steps": [3],
              "race_samples": 5}
    one = evaluate_checkpoint("tiny", tmp_path / "model", prepared_dir, tmp_path / "one",
                              load_section(_params(tmp_path, 1, **attack), "attack", AttackConfig))
    _stage(attack_stage.app, "--experiment", "tiny", "--model", tmp_path / "model", "--prepared", prepared_dir,
           "--out", tmp_path / "two", "--params", _params(tmp_path, 2, **attack))
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    a, b = _columns(tmp_path / "one" / "per_sample.csv"), _columns(tmp_path / "two" / "per_sample.csv")
    assert list(a) == list(b)
    for key in ("id", "label", "clean_correct", "fgsm_correct"):  # no randomness: gathered in order, identical
        assert a[key] == b[key], key
    clean = [np.load(tmp_path / d / "clean_test.npz") for d in ("one", "two")]  # every test image, clean
    assert np.array_equal(clean[0]["correct"], clean[1]["correct"]) and len(clean[0]["ids"]) == one["n_test"]
    assert one["clean_acc_test"] == pytest.approx(clean[0]["correct"].mean())
    every = [str(i) for i in clean[0]["ids"]]  # the attacked subset's clean outcomes are these, at its ids
    assert [str(int(clean[0]["correct"][every.index(i)])) for i in a["id"]] == a["clean_correct"]
    tol = tolerance(one["n"])
    for key in ("clean_acc", "fgsm_acc", "pgd_acc", "pgd_targeted_acc", "robust_acc", "robust_acc_fg_only"):
        assert abs(one[key] - two[key]) <= tol, key
    assert two["autoattack"]["n"] == one["autoattack"]["n"] == 9 and two["autoattack"]["processes"] == 2
    assert abs(one["autoattack_acc"] - two["autoattack_acc"]) <= tolerance(9)
    assert len(two["race"]["acc"]) == len(one["race"]["acc"]) and set(two["sanity"]) == set(one["sanity"])
    monkeypatch.setattr(distributed, "world_size", lambda: 2)  # as a process of two would see it
    with pytest.raises(UserError, match="2 processes for 1 samples"):
        evaluate_checkpoint("tiny", tmp_path / "model", prepared_dir, tmp_path / "three",
                            load_section(_params(tmp_path, 1, n_samples=1), "attack", AttackConfig))


ECHO_OPTIONS = """
import json
import sys
from pathlib import Path

import torch

from attnrobust import distributed
from attnrobust.cli import make_app, run_app
from attnrobust.errors import UserError

app = make_app()


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def main(ctx: typer.Context) -> None:
    options = list(ctx.args)
    with distributed.process_group(torch.device("cpu")):
        Path(options[0], f"rank{distributed.rank()}.json").write_text(json.dumps(options))
        distributed.all_gather(0)  # every process wrote before any fails
        if distributed.rank() > 0:  # 0 waits for them in a collective, which then fails
            raise UserError("params.yaml: attack.eps: bad value (use an integer)")
        distributed.all_gather(0)


run_app(app)
"""


def test_launcher_passes_options_verbatim_and_prints_a_user_error_once(tmp_path, capfd):
    script = tmp_path / "echo.py"
    script.write_text("import typer\n" + ECHO_OPTIONS)
    # shell syntax, and names that torchrun's own parser would take for its options
    options = [str(tmp_path), "--nproc", "3", "a b; echo $HOME `id` > x", "--standalone", "*"]
    capfd.readouterr()
    handler = signal.getsignal(signal.SIGTERM)
    assert distributed.launch(script, options, 3, torch.device("cpu")) == 2
    err = capfd.readouterr().err
    assert [line for line in err.splitlines() if "error" in line.lower()] == [
        "error: params.yaml: attack.eps: bad value (use an integer)"]  # processes 1 and 2; 0 stays quiet
    assert "Traceback" not in err
    for rank in (0, 1, 2):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == options
    assert not (tmp_path / "x").exists()
    assert signal.getsignal(signal.SIGTERM) is handler and "ATTNROBUST_ERROR_DIR" not in os.environ  # as before


def test_shards_cover_the_rows_in_order(monkeypatch):
    for world in (1, 2, 3):
        for n in range(8):
            shares = []
            for rank in range(world):
                monkeypatch.setattr(distributed, "world_size", lambda w=world: w)
                monkeypatch.setattr(distributed, "rank", lambda r=rank: r)
                shares.append(list(range(n))[distributed.shard(n)])
            assert sum(shares, []) == list(range(n))
            assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_autoattack_shares_combine_into_one_summary():
    def part(n, correct, broken):
        acc = {k: c / n if n else float("nan") for k, c in correct.items()}
        return {"status": "ran", "n": n, "acc": acc["square"], "acc_after": acc, "broken_by": broken,
                "rejected_outside_budget": 1}

    parts = [part(2, {"clean": 2, "square": 1}, {"square": 1}),
             part(3, {"clean": 2, "square": 0}, {"square": 2}),
             part(0, {"clean": 0, "square": 0}, {"square": 0})]  # an empty share
    out = combine_shares(parts)
    assert out["n"] == 5 and out["acc"] == pytest.approx(1 / 5) and out["acc_after"]["clean"] == pytest.approx(4 / 5)
    assert out["broken_by"] == {"square": 3} and out["rejected_outside_budget"] == 2
    assert out["processes"] == 3 and "runtime_s" not in out  # no wall-clock time in outputs


def test_more_processes_than_gpus_is_a_user_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserError, match="2 processes need 2 GPUs, this machine has 1"):
        distributed.launch(ROOT / "stages" / "train.py", [], 2, torch.device("cuda"))


def test_who_is_launched(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv(distributed.TORCHRUN_ARGS, raising=False)
    assert not distributed.needs_launch(1) and distributed.needs_launch(2)
    monkeypatch.setenv(distributed.TORCHRUN_ARGS, "--nnodes=2 --node-rank=0 --master-addr=10.0.0.1")
    assert distributed.needs_launch(1)  # one GPU on each of several machines
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not distributed.needs_launch(2)  # already one of torchrun's processes


def test_bad_torchrun_options_are_a_user_error(monkeypatch):
    monkeypatch.setenv(distributed.TORCHRUN_ARGS, "--nnodes=2 --no-such-option")
    with pytest.raises(UserError, match="ATTNROBUST_TORCHRUN_ARGS=.*not valid torchrun options"):
        distributed.launch(ROOT / "stages" / "train.py", [], 2, torch.device("cpu"))
