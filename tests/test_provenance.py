"""Provenance: what produced a result, recorded without times so re-runs stay byte-identical."""
import json
import subprocess

import torch

from attnrobust import provenance
from attnrobust.io import write_json


def test_collect_records_versions_device_precision_threads_and_isa():
    env = provenance.collect("cpu", "fp32", 2)
    assert set(provenance.PACKAGES) <= set(env) and env["torch"].startswith("2.")
    assert env["device"] == "cpu" and env["precision"] == "fp32" and env["threads"] == 2
    assert env["cpu"] and env["isa"] and env["python"].startswith("3.")
    assert not any("time" in k or "date" in k for k in env)  # nothing that changes between two runs


def test_cpu_info_reads_model_and_only_the_listed_isa_flags(tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: fpu sse avx2 amx_bf16 avx512f\n")
    assert provenance.cpu_info(fake) == {"cpu": "Some CPU 9000", "isa": "avx2,avx512f,amx_bf16"}


def test_git_state_names_the_commit_and_dirty_code(tmp_path, monkeypatch):
    assert provenance.git_state(tmp_path) == {"git_commit": "unknown", "git_dirty": False}  # not a checkout
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x = 1\n")
    (tmp_path / "params.yaml").write_text("attack: {eps: 8}\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run(["git", "commit", "-qm", "c"], cwd=tmp_path, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert provenance.git_state(tmp_path) == {"git_commit": head, "git_dirty": False}
    (tmp_path / "notes.txt").write_text("not code")
    (tmp_path / "params.yaml").write_text("attack: {eps: 4}\n")  # what `dvc exp run -S` does: params, not code
    assert provenance.git_state(tmp_path)["git_dirty"] is False
    (tmp_path / "src" / "a.py").write_text("x = 2\n")
    assert provenance.git_state(tmp_path)["git_dirty"] is True


def test_write_is_byte_identical_and_keeps_the_training_provenance(tmp_path):
    model, out = tmp_path / "models" / "e", tmp_path / "results" / "e"
    provenance.write(model, torch.device("cpu"), "auto")
    first = provenance.write(out, torch.device("cpu"), "bf16", upstream=model)
    before = (out / "provenance.json").read_bytes()
    provenance.write(out, torch.device("cpu"), "bf16", upstream=model)
    assert (out / "provenance.json").read_bytes() == before  # same machine, commit and inputs: same bytes
    assert first["precision"] == "bf16" and first["train"]["precision"] == "fp32"  # auto on CPU ran fp32
    assert "train" not in first["train"]


def test_gather_summarises_agreeing_fields_and_marks_mixed_ones(tmp_path):
    base = {"torch": "2.14.1", "cpu": "A", "threads": 2, "git_commit": "0123456789abcdef0123"}
    for name, cpu in (("a", "A"), ("b", "B")):
        write_json(tmp_path / name / "provenance.json", {**base, "cpu": cpu, "train": {**base}})
    out = provenance.gather([tmp_path / "a", tmp_path / "b", tmp_path / "missing"])
    assert out["evaluation"] == {"torch": "2.14.1", "cpu": provenance.MIXED, "threads": 2,
                                 "git_commit": "0123456789ab"}
    assert out["training"]["cpu"] == "A"
    json.dumps(out)  # shallow enough for `dvc metrics diff`
    assert all(not isinstance(v, dict) for part in out.values() for v in part.values())


def test_describe_is_one_line():
    line = provenance.describe(provenance.collect("cpu", "fp32", 2))
    assert "\n" not in line and "torch 2." in line and "fp32" in line
