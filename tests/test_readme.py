"""Every command in README.md is exercised by a test: this file maps each one to the test that runs
it (and fails on a command nobody mapped), checks the Makefile targets the README opens with, and
runs the README's Python API block on a tiny trained model."""
import json
import os
import re
import subprocess

import numpy as np
import pytest

from conftest import ROOT

README = (ROOT / "README.md").read_text()

# README command (regex on the command line) -> the test that runs it ("file::function")
COVERED = [
    (r"make run$", "test_readme.py::test_make_targets_run_the_documented_commands"),
    (r"make test$", "test_readme.py::test_make_targets_run_the_documented_commands"),
    (r"dvc repro train@\w+-\d+$", "test_dvc_workflows.py::test_two_runs_from_scratch_give_byte_identical_outputs"),
    (r"dvc exp run -S attack\.eps=\d+$", "test_dvc_workflows.py::test_queue_with_two_workers_matches_running_one_after_the_other"),
    (r"dvc exp run -S 'train\.seeds=\[[\d,]+\]'$",
     "test_dvc_workflows.py::test_adding_a_seed_trains_only_the_new_seed_and_the_claims_pool_both"),
    (r"dvc exp run -S experiments\.\w+\.train_eps=\d+$",
     "test_pipeline_e2e.py::test_experiment_param_retrains_only_that_experiment_and_the_tools_show_it"),
    (r"dvc exp show$", "test_pipeline_e2e.py::test_experiment_param_retrains_only_that_experiment_and_the_tools_show_it"),
    (r"dvc metrics diff .+", "test_pipeline_e2e.py::test_experiment_param_retrains_only_that_experiment_and_the_tools_show_it"),
    (r"dvc plots diff .+", "test_pipeline_e2e.py::test_experiment_param_retrains_only_that_experiment_and_the_tools_show_it"),
    (r"dvc exp run -S profile=tiny$", "test_dvc_workflows.py::test_profiles_re_run_what_they_change"),
    (r"dvc exp run -S data\.gtsrb\.local_dir=\S+ -S data\.coco\.local_dir=\S+$",
     "test_dvc_workflows.py::test_local_dir_copy_is_read_in_place_and_tracked_by_dvc"),
    # needs the internet and a GPU: the test resolves and strictly parses the profile instead
    (r"dvc exp run -S profile=full$", "test_profiles.py::test_full_profile_is_real_data_at_paper_like_sizes"),
    (r"git add -A && git commit .+", "test_dvc_workflows.py::test_queue_with_two_workers_matches_running_one_after_the_other"),
    (r"dvc exp run --queue -S attack\.eps=\d+$",
     "test_dvc_workflows.py::test_queue_with_two_workers_matches_running_one_after_the_other"),
    (r"dvc queue (start -j 2|status)$",
     "test_dvc_workflows.py::test_queue_with_two_workers_matches_running_one_after_the_other"),
    (r"dvc remote add -d shared .+", "test_dvc_workflows.py::test_push_to_a_folder_remote_and_pull_into_an_empty_workspace"),
    (r"git add \.dvc/config && git commit .+",
     "test_dvc_workflows.py::test_push_to_a_folder_remote_and_pull_into_an_empty_workspace"),
    (r"dvc (push|pull)$", "test_dvc_workflows.py::test_push_to_a_folder_remote_and_pull_into_an_empty_workspace"),
    # S3 needs credentials and a network: the folder remote test runs the same `dvc remote` code path
    (r"dvc remote (add -d storage s3://|modify --local storage ).+",
     "test_dvc_workflows.py::test_push_to_a_folder_remote_and_pull_into_an_empty_workspace"),
    (r"export ATTNROBUST_TORCHRUN_ARGS=.+",
     "test_distributed.py::test_who_is_launched"),
    (r"python stages/train\.py .+", "test_stages_cli.py::test_stages_chain_fetch_masks_train_attack_metrics"),
    (r"make run-real$", "test_readme.py::test_make_run_real_runs_the_real_cpu_profile_on_the_local_copies"),
    (r"make test-fast$", "test_lock.py::test_run_test_bench_install_from_the_lock_and_ci_runs_make_test"),
    (r"make lock$", "test_lock.py::test_make_lock_regenerates_both_locks_from_pyproject"),
    (r"bash bench/gpu_check\.sh \S+$",
     "test_gpu_check.py::test_without_cuda_it_says_so_runs_the_cpu_steps_and_writes_the_report"),
    (r"python bench/readme_results\.py", "test_readme.py::test_results_section_is_what_the_metrics_say"),
    (r"python bench/stage_times\.py \S+$", "test_readme.py::test_stage_times_reads_a_timestamped_repro_log"),
    (r"python bench/seed_stability\.py ", "test_readme.py::test_seed_stability_counts_agreements_and_flips"),
    (r"python bench/cpu_bf16\.py", "test_readme.py::test_cpu_bf16_times_every_model_in_both_precisions"),
    (r"python bench/bf16_strength\.py \S+", "test_readme.py::test_bf16_strength_counts_per_sample_disagreements"),
]


def readme_commands() -> list[str]:
    """Shell command lines of README's fenced blocks (not ```yaml, ```python or ```text), comments stripped,
    backslash continuations joined."""
    commands = []
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", README, flags=re.S):
        if lang in ("yaml", "python", "text"):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip() if not line.lstrip().startswith("#") else ""
            if line:
                commands.append(re.sub(r"\s+", " ", line))
    return commands


def test_every_readme_command_is_mapped_to_a_test_that_exists():
    commands = readme_commands()
    assert len(commands) > 15  # the parser found the blocks
    unmapped = [c for c in commands if not any(re.match(pattern, c) for pattern, _ in COVERED)]
    assert not unmapped, f"README commands no test exercises (add the test and a COVERED entry): {unmapped}"
    for _, test in COVERED:
        file, function = test.split("::")
        assert re.search(rf"^def {function}\(", (ROOT / "tests" / file).read_text(), flags=re.M), test


def test_every_mapping_is_used():
    commands = readme_commands()
    unused = [p for p, _ in COVERED if not any(re.match(p, c) for c in commands)]
    assert not unused, f"COVERED entries for commands the README no longer has: {unused}"


def test_make_targets_run_the_documented_commands():
    """`make run` is `dvc repro` with the venv's tools first; `make test` is pytest (CI's command)."""
    env = {**os.environ, "MAKEFLAGS": ""}
    run = subprocess.run(["make", "-n", "-W", "pyproject.toml", "run"], cwd=ROOT, capture_output=True, text=True,
                         env=env)
    assert run.returncode == 0 and re.search(r"PATH=.*\.venv/bin.* dvc repro$", run.stdout, flags=re.M), run.stdout
    assert "pip install -q -e '.[test]'" in run.stdout  # a fresh clone installs first
    test = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert test.returncode == 0 and re.search(r"python -m pytest -n 2 --dist loadgroup$", test.stdout,
                                              flags=re.M), test.stdout  # two workers: see tests/conftest.py
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_make_run_real_runs_the_real_cpu_profile_on_the_local_copies():
    """`make run-real` is the README's local-copy command with the real-cpu profile (its run is kept in
    runs/real-cpu; tests/test_dvc_workflows.py runs a local copy through DVC)."""
    env = {**os.environ, "MAKEFLAGS": ""}
    done = subprocess.run(["make", "-n", "-W", "pyproject.toml", "run-real"], cwd=ROOT, capture_output=True,
                          text=True, env=env)
    command = " ".join(done.stdout.replace("\\\n", " ").split())  # make -n keeps the line continuation
    assert done.returncode == 0 and (  # under `make test`, make -n also prints "make[1]: Leaving directory"
        "dvc exp run -S profile=real-cpu -S data.gtsrb.local_dir=../shared/data/gtsrb "
        "-S data.coco.local_dir=../shared/data/coco-mini make" in command + " make"), done.stdout
    moved = subprocess.run(["make", "-n", "-W", "pyproject.toml", "run-real", "GTSRB_DIR=/d/g", "COCO_DIR=/d/c"],
                           cwd=ROOT, capture_output=True, text=True, env=env).stdout
    assert "data.gtsrb.local_dir=/d/g" in moved and "data.coco.local_dir=/d/c" in moved
    assert (ROOT / "profiles" / "real-cpu.yaml").is_file()


@pytest.fixture
def api_workspace(tmp_path, monkeypatch):
    """The paths the README's API block names, on tiny data: data/prepared/gtsrb (43 classes, as the
    block's `num_classes=43` says) and a one-epoch models/gtsrb_pgd_at/s0."""
    from attnrobust.data.prepared import PreparedSplit, write_prepared
    from attnrobust.experiment import parse_experiment
    from attnrobust.training import TrainConfig, train_experiment

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)

    def split(n):
        labels = np.arange(n) % 43
        return PreparedSplit(rng.integers(0, 256, (n, 3, 16, 16), dtype=np.uint8), np.ones((n, 16, 16), np.uint8),
                             labels, [f"i{i}" for i in range(n)])

    prepared = tmp_path / "data" / "prepared" / "gtsrb"
    prepared.mkdir(parents=True)
    write_prepared(prepared, {"train": split(86), "test": split(86)}, dataset="gtsrb",
                   classes=[str(c) for c in range(43)], shard_size=64)
    exp = parse_experiment("gtsrb_pgd_at", {"dataset": "gtsrb", "method": "pgd_at", "model": "cnn",
                                            "model_args": {"width": 4}, "train_steps": 1}, "test")
    train_experiment(exp, TrainConfig(epochs=1, batch_size=43, lr=0.01, weight_decay=0.0, seeds=[0], device="cpu",
                                      threads=1), prepared, tmp_path / "models" / "gtsrb_pgd_at" / "s0", tmp_path / "live")
    return tmp_path


def test_python_api_block_runs(api_workspace):
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert len(blocks) == 1
    scope: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)  # noqa: S102 (our own README)
    x, x_adv, x_tgt = scope["images"][:64], scope["x_adv"], scope["x_tgt"]
    assert x_adv.shape == x.shape == x_tgt.shape
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and (x_tgt - x).abs().max() <= 8 / 255 + 1e-6
    assert (scope["targets"] != scope["labels"][:64]).all()
    assert not scope["model"].training


def test_results_section_is_what_the_metrics_say():
    """The README's results, their uncertainty and the environment they were made in are printed
    from the committed metrics/ (provenance included) by bench/readme_results.py, never by hand."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_results", ROOT / "bench" / "readme_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.results_section()
    assert expected in README, "README results are stale: paste `python bench/readme_results.py` between its markers"
    for run in sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "runs").glob("*/run.json")):
        run = run.rsplit("/", 1)[0]
        assert module.results_section(run) in README, (
            f"README results of {run} are stale: paste `python bench/readme_results.py --run {run}` between its markers")


def _bench(name: str):
    """bench/<name>.py as a module (bench/ is scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stage_times_reads_a_timestamped_repro_log(tmp_path, capsys):
    module = _bench("stage_times")
    log = ["10.0 Running stage 'train@a':", "15.0 ...", "40.0 Running stage 'train@b':",
           "50.0 Running stage 'attack@a':", "52.0 done"]
    assert module.stage_seconds(log) == {"train@a": 30.0, "train@b": 10.0, "attack@a": 2.0}
    (tmp_path / "log").write_text("\n".join(log))
    module.main(str(tmp_path / "log"))
    assert "| `train` | 2 | 40 | 95% |" in capsys.readouterr().out


def test_seed_stability_counts_agreements_and_flips(tmp_path, capsys):
    import json

    module = _bench("seed_stability")
    row = {"effect": 0.1, "ci_low": 0.0, "ci_high": 0.2}
    a = {"x/0": {**row, "verdict": "holds"}, "x/1": {**row, "verdict": "inconclusive"}, "x/2": {**row, "verdict": "holds"}}
    b = {"x/0": {**row, "verdict": "holds"}, "x/1": {**row, "verdict": "holds"}, "x/2": {**row, "verdict": "contradicted"}}
    result = module.compare(a, b)
    assert (result["n"], result["agree"], result["flips"]) == (3, 1, 1)
    for name, verdicts in (("a", a), ("b", b)):
        (tmp_path / name / "metrics").mkdir(parents=True)
        (tmp_path / name / "metrics" / "verdicts.json").write_text(json.dumps(verdicts))
        (tmp_path / name / "metrics" / "claims.json").write_text(json.dumps({k: {"claim": k} for k in verdicts}))
    import sys
    argv, sys.argv = sys.argv, ["seed_stability.py", str(tmp_path / "a"), str(tmp_path / "b")]
    try:
        assert module.main() == 1  # a flip between holds and contradicted fails the check
    finally:
        sys.argv = argv
    out = capsys.readouterr().out
    assert "1 of 3 verdicts agree; 1 flip" in out and "1 holds -> contradicted, 1 inconclusive -> holds" in out


def test_cpu_bf16_times_every_model_in_both_precisions():
    module = _bench("cpu_bf16")
    rows = [module.measure(name, spec, batch=2, repeats=1) for name, spec in module.MODELS.items()]
    assert [r["model"] for r in rows] == ["cnn", "s3ta", "protoattn"]
    assert all(r["fp32_s"] > 0 and r["bf16_s"] > 0 and r["fp32_over_bf16"] > 0 for r in rows)


def test_bf16_strength_counts_per_sample_disagreements(tmp_path):
    module = _bench("bf16_strength")
    runs = {"fp32": ({"clean_acc": 0.75, "robust_acc": 0.5}, {"a": 1, "b": 1, "c": 0, "d": 0}, 4.0),
            "bf16": ({"clean_acc": 0.75, "robust_acc": 0.5}, {"a": 1, "b": 0, "c": 1, "d": 0}, 2.0)}
    module.attack = lambda exp, seed, precision, tmp: runs[precision]
    assert module.main(["m/s0", "--out", str(tmp_path / "out.json")]) == 0
    (row,) = json.loads((tmp_path / "out.json").read_text())["rows"]
    assert row["model"] == "m/s0" and row["n"] == 4 and row["speedup"] == 2.0
    assert row["stand_bf16_fall_fp32"] == 1 and row["stand_fp32_fall_bf16"] == 1  # "c" and "b"
    runs["bf16"] = (runs["bf16"][0], {"a": 1}, 2.0)
    with pytest.raises(ValueError, match="different samples"):
        module.compare("m/s0", runs["fp32"], runs["bf16"])
