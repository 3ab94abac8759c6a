"""Tiny DVC repositories for the end-to-end tests: this project's pipeline on the tiny profile.

A tiny repo is a fresh git + DVC repository holding copies of dvc.yaml, the stage scripts, the
library (for DVC's dependency hashes; the stages import the installed package) and profiles/,
with params.yaml selecting ``profile: tiny`` (profiles/tiny.yaml). It runs the real `dvc repro`
and `dvc exp` commands in a subprocess, as a user would.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COPIED_FILES = ("dvc.yaml", ".dvcignore", ".gitignore")
COPIED_DIRS = ("stages", "src", "runs")  # runs/: the kept real-data run, a dep of the report stage
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@t"}


def tool_env() -> dict[str, str]:
    """The environment for `dvc` and `git`: this venv's `dvc` and `python` first, a git identity."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **GIT_IDENTITY}


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    """Run a command; fail the test with the tail of its output if it exits non-zero. Returns the output."""
    proc = subprocess.run(args, cwd=cwd, env=env or tool_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def ran_stages(output: str) -> set[str]:
    """The stages a `dvc repro` / `dvc exp run` output says it ran."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def make_repo(repo: Path, *, experiments: list[str] | None = None, profile: str = "tiny",
              params: dict | None = None) -> Path:
    """Create a tiny repo at ``repo`` (committed, nothing run yet) and return it.

    ``experiments`` keeps only those experiments (and their entries in the profiles), so a test
    pays only for the stages it needs when it targets ``dvc repro metrics``; ``params`` is
    deep-merged over params.yaml (e.g. ``{"train": {"threads": 1}}``).
    """
    repo.mkdir(parents=True, exist_ok=True)
    for name in COPIED_FILES:
        shutil.copy(ROOT / name, repo / name)
    for name in COPIED_DIRS:
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (repo / ".dvc").mkdir()
    shutil.copy(ROOT / ".dvc" / "config", repo / ".dvc" / "config")
    shutil.copytree(ROOT / ".dvc" / "plots", repo / ".dvc" / "plots")  # the race heatmap and ROC templates
    write_params(repo, profile=profile, experiments=experiments, params=params)
    env = tool_env()
    run(["git", "init", "-q", "-b", "main"], repo, env)
    commit(repo, "tiny")
    return repo


def write_params(dest: Path, *, profile: str = "tiny", experiments: list[str] | None = None,
                 params: dict | None = None) -> Path:
    """Copy profiles/ into ``dest`` and write ``dest/params.yaml``: this project's params selecting
    ``profile``, with only ``experiments`` (if given) and ``params`` deep-merged over it. Returns its path."""
    from attnrobust.config import deep_merge

    shutil.copytree(ROOT / "profiles", dest / "profiles", dirs_exist_ok=True)
    values = yaml.safe_load((ROOT / "params.yaml").read_text())
    values["profile"] = profile
    values["train"]["seeds"] = [0]  # the tiny profile's one seed: dvc.yaml's matrix reads train.seeds from here
    if experiments is not None:
        keep_experiments(dest, values, experiments)
    values = deep_merge(values, params or {})
    (dest / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    return dest / "params.yaml"


def keep_experiments(repo: Path, values: dict, experiments: list[str]) -> None:
    """Drop every other experiment from ``values`` (params.yaml) and from the repo's profiles, where
    the rules (``"*"``, ``model=cnn``, ...) stay: they shrink whatever experiments there are."""
    from attnrobust.config import RULE_FIELDS

    def kept(key: str) -> bool:
        return key in experiments or key == "*" or key.partition("=")[0] in RULE_FIELDS

    values["experiments"] = {k: v for k, v in values["experiments"].items() if k in experiments}
    values["detectors"] = {k: v for k, v in values["detectors"].items() if v["teacher"] in experiments}
    for path in (repo / "profiles").glob("*.yaml"):
        overlay = yaml.safe_load(path.read_text())
        overlay["experiments"] = {k: v for k, v in overlay["experiments"].items() if kept(k)}
        overlay["detectors"] = {k: v for k, v in overlay["detectors"].items() if k in values["detectors"]}
        path.write_text(yaml.safe_dump(overlay, sort_keys=False))


def trimmed_copy(source: Path, dest: Path, experiments: list[str]) -> Path:
    """Copy the tiny repo ``source`` (its git history, DVC cache and outputs) to ``dest`` and keep
    only ``experiments`` there, as a user drops experiments from params.yaml: the outputs of the
    dropped ones are deleted, their dvc.lock entries dropped (bench/prune_lock.py: DVC keeps them,
    and every stage of a later repro would parse them), and the change is committed. The kept
    stages stay up to date (their params do not change); ``metrics`` is stale (it reads every
    experiment)."""
    shutil.copytree(source, dest, symlinks=True)
    values = yaml.safe_load((dest / "params.yaml").read_text())
    dropped = set(values["experiments"]) - set(experiments)
    detectors = set(values["detectors"])
    keep_experiments(dest, values, experiments)
    (dest / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    for exp in dropped:
        for out in (dest / "models" / exp, dest / "results" / "attack" / exp, dest / "dvclive" / "train" / exp):
            shutil.rmtree(out, ignore_errors=True)
    for det in detectors - set(values["detectors"]):
        for out in (dest / "models" / "detectors" / det, dest / "results" / "detect" / det):
            shutil.rmtree(out, ignore_errors=True)
    sys.path.insert(0, str(ROOT / "bench"))
    from prune_lock import prune

    prune(dest)
    commit(dest, f"keep {', '.join(experiments)}")
    return dest


def commit(repo: Path, message: str) -> None:
    """`git add -A` and commit (queued experiments see only what git tracks)."""
    env = tool_env()
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", message, "--allow-empty"], repo, env)


def output_files(repo: Path, roots: tuple[str, ...] = ("data", "models", "results", "metrics")) -> dict[str, bytes]:
    """Every file DVC wrote under ``roots`` (relative path -> bytes), to compare two runs or a push/pull."""
    out = {}
    for root in roots:
        for path in sorted((repo / root).rglob("*")):
            if path.is_file() and path.name != ".gitignore":
                out[str(path.relative_to(repo))] = path.read_bytes()
    return out
