"""bench/gpu_check.sh without a GPU: it says so, runs the CPU-side steps, and writes its report; a failing
or hanging step is recorded and the script goes on within its budget. The GPU steps themselves run only
on a CUDA machine (tests/test_cuda.py holds their tests)."""
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import time

import pytest
import torch

from conftest import ROOT

SCRIPT = ROOT / "bench" / "gpu_check.sh"
NO_CUDA = ("no CUDA device: ran only the CPU-side steps (install check, timing harnesses at a tiny size); "
           "nothing was measured on a GPU")
VENV = (ROOT / ".venv" / "bin" / "python").exists()  # then the script checks the install as it would anywhere
STEPS = ["install", "env", "torchattacks", "cuda_tests", "pipeline", "pgd", "train"]

needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the script runs the GPU check")


def _driver():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(out, env=None, timeout=120) -> subprocess.CompletedProcess:
    env = {**os.environ, **({} if VENV else {"GPU_CHECK_PYTHON": sys.executable}), **(env or {})}
    return subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, timeout=timeout, env=env)


@needs_no_gpu
def test_without_cuda_it_says_so_runs_the_cpu_steps_and_writes_the_report(tmp_path):
    proc = _run(tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines().count(NO_CUDA) == 1
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert report["mode"] == "cpu" and report["note"] == NO_CUDA and report["ok"] is True
    steps = report["steps"]
    assert list(steps) == STEPS
    assert {k: s["status"] for k, s in steps.items()} == {
        "install": "ok" if VENV else "skipped", "env": "ok", "torchattacks": "skipped", "cuda_tests": "skipped",
        "pipeline": "skipped", "pgd": "ok", "train": "ok"}
    assert steps["env"]["result"]["cuda_available"] is False
    assert not VENV or steps["install"]["reason"].startswith("checked: .venv is")  # checked, never installed

    pgd = steps["pgd"]["result"]
    assert [(r["precision"], r["batch"]) for r in pgd["runs"]] == [("fp32", 16), ("fp32", 32)]
    for run in pgd["runs"]:
        variants = run["variants"]
        assert all(v["image_steps_per_s"] > 0 and 0 <= v["robust_acc"] <= 1 for v in variants.values())
        # early stopping keeps every point it broke, so it is never weaker (one sample of float slack)
        assert variants["ours"]["robust_acc"] <= variants["ours_no_early_stop"]["robust_acc"] + 1 / run["batch"]
        if "torchattacks" in variants:  # installed here: the same steps give the same verdicts
            assert variants["torchattacks"]["same_robust_acc_as_ours_no_early_stop"]
        else:
            assert pgd["reference"]["status"] == "not installed"

    train = steps["train"]["result"]["experiments"]
    assert set(train) == {"gtsrb_s3ta", "coco_fgmask_at"}
    for row in train.values():
        assert row["images"] > 0 and row["images_per_s"] > 0 and row["losses_finite"] and row["image_size"] == 16
        assert row["peak_memory_gib"] is None  # a CUDA-only figure
    assert train["gtsrb_s3ta"]["method_config"]["train_steps"] == 7  # the full profile's PGD-7, not the default's

    summary = (tmp_path / "out" / "gpu_check.md").read_text()
    assert NO_CUDA in summary and "| pgd | ok |" in summary and "**Training throughput**" in summary
    with tarfile.open(tmp_path / "out" / "gpu_check_logs.tar.gz") as logs:
        assert {"./steps.tsv", "./pgd.log", "./train.log"} <= set(logs.getnames())


FAKE_PYTHON = """#!/usr/bin/env bash
# the driver, except that env answers at once (no CUDA), the pgd step fails and the train step hangs
case "$2" in
  env) echo '{{"cuda_available": false}}' >"$4"; echo cpu >"${{4%.json}}.mode" ;;  # env --out FILE
  pgd) echo "pgd broke" >&2; exit 3 ;;
  train) sleep 300 ;;
  *) exec {python} "$@" ;;
esac
"""


@needs_no_gpu
def test_a_failing_and_a_hanging_step_are_recorded_and_the_budget_holds(tmp_path):
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON.format(python=sys.executable))
    fake.chmod(0o755)
    t0 = time.monotonic()
    proc = _run(tmp_path / "out", env={"GPU_CHECK_PYTHON": str(fake), "GPU_CHECK_BUDGET_S": "30"})
    wall = time.monotonic() - t0
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines().count(NO_CUDA) == 1
    assert wall < 30 + 10  # the hang was cut at the budget, less the report's reserve
    steps = json.loads((tmp_path / "out" / "gpu_check.json").read_text())["steps"]
    assert steps["pgd"]["status"] == "failed" and steps["pgd"]["rc"] == 3 and "pgd broke" in steps["pgd"]["log_tail"]
    assert steps["train"]["status"] == "timeout" and 10 <= steps["train"]["limit_s"] <= 30 - 15
    assert "| train | timeout: stopped at its limit |" in (tmp_path / "out" / "gpu_check.md").read_text()


def _per_sample(path, rows):
    path.mkdir(parents=True)
    (path / "per_sample.csv").write_text("\n".join(",".join(map(str, r)) for r in rows) + "\n")


def test_per_sample_agreement_per_column_and_the_worst_disagreement(tmp_path):
    a, b = tmp_path / "fp32", tmp_path / "bf16"
    header = ["id", "label", "clean_correct", "pgd_correct"]
    _per_sample(a / "results/attack/img/s0", [header, ["i0", 3, 1, 1], ["i1", 4, 1, 0], ["i2", 5, 1, 1], ["i3", 6, 0, 0]])
    _per_sample(b / "results/attack/img/s0", [header, ["i0", 3, 1, 0], ["i1", 4, 1, 0], ["i2", 5, 1, 1], ["i3", 6, 0, 0]])
    video = ["id", "num_labels", "clean_hit", "pgd_hit"]  # video's outcomes are top-1 hits
    _per_sample(a / "results/attack/clip/s0", [video, ["v0", 2, 1, 1], ["v1", 3, 1, 1]])
    _per_sample(b / "results/attack/clip/s0", [video, ["v0", 2, 0, 0], ["v1", 3, 1, 1]])
    _per_sample(a / "results/attack/only_fp32/s0", [header, ["i0", 1, 1, 1]])  # the bf16 run never got there
    out = _driver().compare_per_sample(a, b)
    assert set(out["experiments"]) == {"img/s0", "clip/s0"}
    assert out["experiments"]["img/s0"] == {"n": 4, "differ": {"clean_correct": 0, "pgd_correct": 1}}
    assert out["columns"]["pgd_correct"] == {"differ": 1, "n": 4, "experiments": 1, "agreement": 0.75}
    assert out["columns"]["clean_correct"]["agreement"] == 1.0 and "label" not in out["columns"]
    assert out["worst"]["experiment"] == "clip/s0" and out["worst"]["differ"] == 1 and out["worst"]["agreement"] == 0.5
