"""The committed dvc.lock is what the committed code produces: on a clean clone `dvc status`
may report missing outputs (nothing has run there) but no changed code, params or command."""
import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

CODE = ("src", "stages", "code/")  # the code stage's deps (src, stages) and every other stage's code/<script>.json


def stale_stages(status: dict) -> dict[str, list[str]]:
    """Stages whose code deps, params or command differ from dvc.lock, with what differs."""
    stale = {}
    for stage, changes in status.items():
        why = []
        for change in changes if isinstance(changes, list) else []:
            if not isinstance(change, dict):
                continue
            why += [f"{path} {state}" for path, state in change.get("changed deps", {}).items()
                    if path.startswith(CODE)]
            why += [f"params {name}" for name in change.get("changed params", {})]
            why += ["command"] if "changed command" in change else []
        if why:
            stale[stage] = why
    return stale


def test_stale_stages_reads_dvc_status_json():
    status = {"train@a": [{"changed deps": {"data/prepared/gtsrb": "deleted", "code/train.json": "modified"}},
                          {"changed outs": {"models/a": "deleted"}}],
              "code": [{"changed deps": {"src": "modified"}}],
              "attack@a": [{"changed outs": {"results/attack/a": "deleted"}}],
              "metrics": [{"changed params": {"params.yaml": {"claims": "modified"}}}, "changed command"],
              "report": ["always changed"]}
    assert stale_stages(status) == {"train@a": ["code/train.json modified"], "code": ["src modified"],
                                    "metrics": ["params params.yaml"]}
    assert stale_stages({"m": [{"changed command": True}]}) == {"m": ["command"]}


def test_committed_dvc_lock_is_current():
    dvc = Path(sys.executable).with_name("dvc")
    done = subprocess.run([str(dvc), "status", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    stale = stale_stages(json.loads(done.stdout or "{}"))
    assert not stale, ("dvc.lock was not made by this code: run `dvc repro` and commit dvc.lock, metrics/ and "
                       "reports/ from that run\n" + "\n".join(f"  {s}: {', '.join(w)}" for s, w in stale.items()))


def test_committed_dvc_lock_has_no_entry_of_a_stage_that_is_gone():
    """DVC keeps the lock entry of a removed stage, and every stage of a repro parses and rewrites the
    whole file: an entry of no stage is dead weight (bench/prune_lock.py drops them)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from prune_lock import stale_entries

    assert stale_entries(ROOT) == [], "run `python bench/prune_lock.py` and commit dvc.lock"


def test_prune_lock_drops_only_the_entries_of_missing_stages(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    from prune_lock import prune

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "dvc.yaml").write_text("stages:\n  a:\n    cmd: echo a\n")
    lock = ("schema: '2.0'\nstages:\n  a:\n    cmd: echo a\n  gone:\n    cmd: echo gone\n    outs:\n"
            "    - path: x\n      md5: 0123\n")
    (tmp_path / "dvc.lock").write_text(lock)
    assert prune(tmp_path) == ["gone"]
    assert (tmp_path / "dvc.lock").read_text() == "schema: '2.0'\nstages:\n  a:\n    cmd: echo a\n"
    assert prune(tmp_path) == []
