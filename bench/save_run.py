"""Keep a finished run of another profile beside the default results, as ``runs/<name>/``.

    make run-real 2>&1 | python -u -c 'import sys, time
    for line in sys.stdin: print(f"{time.time():.1f} {line}", end="", flush=True)' > real.log
    python bench/save_run.py --workspace . --log real.log --name real-cpu --command "make run-real" \\
        --about "Real GTSRB and real COCO (coco-mini) from ../shared/data."

Copies the run's metrics files (``metrics/*.json``, ``metrics/plots/``), its report (``reports/``) and
its params file and profile from the workspace the run left them in, and writes ``run.json``: the profile,
the command, the wall time and the seconds per stage family (from the timestamped log, as
bench/stage_times.py reads it). The report stage shows ``runs/real-cpu`` beside the default run;
bench/readme_results.py prints it for the README. Nothing here is computed: every number is the
run's own. Only a run of committed code is kept: the script refuses a workspace whose code
(src/, stages/, dvc.yaml, profiles/) differs from its commit. params.yaml may differ: `dvc exp
run -S` writes its values there (which is also why such a run's metrics/env.json says
`git_dirty: true`); the copy kept here is that file.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from stage_times import by_family, stage_seconds  # noqa: E402

METRICS = ("robustness.json", "verdicts.json", "claims.json", "detection.json", "env.json")


def save_run(workspace: Path, logs: list[Path], name: str, command: str, about: str, runs: Path = ROOT / "runs") -> Path:
    """Copy the run's results from ``workspace`` to ``runs/<name>/``. ``logs``: the run's timestamped
    output, one file per invocation when it was interrupted and resumed (times are summed; a stage
    that ran in two of them counts both parts)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(workspace), *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    env = json.loads((workspace / "metrics" / "env.json").read_text())
    changed = git("status", "--porcelain", "--", "src", "stages", "dvc.yaml", "profiles")
    commits = {part.get("git_commit") for part in env.values() if isinstance(part, dict)}
    head = git("rev-parse", "HEAD")
    if changed or not all(c and head.startswith(str(c)) for c in commits):  # env.json holds a short hash
        raise SystemExit(f"{workspace}: the run's code is not its commit's (changed: {changed.split() or 'none'}; "
                         f"metrics/env.json commits {sorted(map(str, commits))}, HEAD {head}); keep only a run of "
                         "committed code")
    seconds: dict[str, float] = defaultdict(float)
    wall = 0.0
    for log in logs:
        lines = log.read_text().splitlines()
        for stage, s in stage_seconds(lines).items():
            seconds[stage] += s
        wall += float(lines[-1].split(" ", 1)[0]) - float(lines[0].split(" ", 1)[0])
    families = {family: sum(values) for family, values in by_family(seconds).items()}
    out = runs / name
    if out.exists():
        shutil.rmtree(out)
    (out / "metrics").mkdir(parents=True)
    for file in METRICS:
        shutil.copy2(workspace / "metrics" / file, out / "metrics" / file)
    shutil.copytree(workspace / "metrics" / "plots", out / "metrics" / "plots")
    shutil.copytree(workspace / "reports", out / "reports")
    shutil.copy2(workspace / "params.yaml", out / "params.yaml")
    profile = yaml.safe_load((workspace / "params.yaml").read_text()).get("profile", "default")
    if profile != "default":  # the overlay as the run read it (the committed one may have moved on since)
        shutil.copy2(workspace / "profiles" / f"{profile}.yaml", out / f"profile-{profile}.yaml")
    largest_first = lambda d: sorted(d.items(), key=lambda kv: -kv[1])  # noqa: E731
    run = {"profile": profile, "command": command, "about": about, "commit": head, "wall_min": round(wall / 60, 1),
           "invocations": len(logs), "stages": len(seconds),
           "stage_seconds": {k: round(v) for k, v in largest_first(families)},
           "slowest": {k: round(v) for k, v in largest_first(seconds)[:5]}}
    (out / "run.json").write_text(json.dumps(run, indent=1) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workspace", type=Path, required=True, help="where the run left metrics/ and reports/")
    ap.add_argument("--log", type=Path, action="append", required=True,
                    help="the run's output, a timestamp on every line; again for each resumed invocation")
    ap.add_argument("--name", required=True)
    ap.add_argument("--command", required=True, help="the command that ran, as a user would type it")
    ap.add_argument("--about", required=True, help="one sentence: the data the run read")
    args = ap.parse_args(argv)
    print(save_run(args.workspace, args.log, args.name, args.command, args.about))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
