"""Training: determinism on CPU, resume after an interruption, checkpoints that carry their config."""
import pytest
import torch

from attnrobust import training
from attnrobust.checkpoint import load_model, read_checkpoint
from attnrobust.errors import UserError
from attnrobust.experiment import parse_experiment
from attnrobust.training import TrainConfig, train_experiment

@pytest.fixture(autouse=True)
def _outside_any_repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # dvclive inspects the git repo around the cwd; keep tests independent of it


CFG = TrainConfig(epochs=3, batch_size=16, lr=0.01, weight_decay=0.0, seeds=[0], device="cpu", threads=1)


def _exp(method="standard", **kw):
    return parse_experiment("tiny", {"dataset": "gtsrb", "method": method, "model": "cnn",
                                     "model_args": {"width": 4}, **kw}, "test")


def _weights(path):
    return read_checkpoint(path)["state_dict"]


def test_training_is_deterministic_and_learns(prepared_dir, tmp_path):
    a = train_experiment(_exp(), CFG, prepared_dir, tmp_path / "a", tmp_path / "live_a")
    train_experiment(_exp(), CFG, prepared_dir, tmp_path / "b", tmp_path / "live_b")
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["clean_acc"] > 0.5  # 3 separable classes; chance is 1/3
    assert (tmp_path / "live_a" / "plots" / "metrics" / "train" / "loss.tsv").is_file()


def test_interrupted_training_resumes_to_the_same_model(prepared_dir, tmp_path, monkeypatch):
    exp = _exp("pgd_at", train_eps=8, train_steps=2, train_step_size=4.0)
    train_experiment(exp, CFG, prepared_dir, tmp_path / "full", tmp_path / "live_full")
    resume = tmp_path / "resume.pt"
    real_epoch, calls = training.train_one_epoch, {"n": 0}

    def crash_in_second_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed mid-run
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_one_epoch", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_experiment(exp, CFG, prepared_dir, tmp_path / "resumed", tmp_path / "live_r", resume_file=resume)
    assert resume.is_file() and not (tmp_path / "resumed" / "model.pt").exists()
    monkeypatch.setattr(training, "train_one_epoch", real_epoch)
    train_experiment(exp, CFG, prepared_dir, tmp_path / "resumed", tmp_path / "live_r", resume_file=resume)
    wf, wr = _weights(tmp_path / "full"), _weights(tmp_path / "resumed")
    assert all(torch.equal(wf[k], wr[k]) for k in wf)


def test_checkpoint_carries_config_and_loads_in_eval_mode(prepared_dir, tmp_path):
    train_experiment(_exp(), CFG, prepared_dir, tmp_path / "m", tmp_path / "live")
    meta = read_checkpoint(tmp_path / "m")["meta"]
    assert meta["experiment"] == "tiny" and meta["config"]["method"] == "standard" and meta["train"]["epochs"] == 3
    model = load_model(tmp_path / "m")
    assert not model.training
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, 3)
    with pytest.raises(UserError, match="belongs to experiment 'tiny'"):
        load_model(tmp_path / "m", expect_experiment="other")


def test_garbage_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a loadable attnrobust checkpoint"):
        load_model(bad)


def test_seeding_turns_on_deterministic_kernels_without_loading_the_compiler():
    """seed_everything sets what torch.use_deterministic_algorithms(True, warn_only=True) sets, but in a
    fresh process (every stage is one) it does not import torch._inductor, which costs seconds."""
    import subprocess
    import sys

    code = ("import sys, torch; from attnrobust.runtime import seed_everything; seed_everything(0); "
            "print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(), "
            "'torch._inductor' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True", "False"]
