"""Drop dvc.lock entries of stages that dvc.yaml no longer defines.

    python bench/prune_lock.py            # in the repository root; prints what it dropped

DVC keeps a stage's lock entry after the stage is gone (renamed, or an experiment removed from
params.yaml), and every stage of a `dvc repro` loads, parses and rewrites the whole file: 36 such
entries (the single-seed `train@<exp>`/`attack@<exp>` stages from before `train.seeds`) were 23%
of the committed dvc.lock. Removing them changes no stage's status. The file is rewritten with
DVC's own YAML round trip (formatting kept); tests/test_dvc_lock.py fails while any is left.
"""
from __future__ import annotations

import sys
from pathlib import Path


def stale_entries(root: Path) -> list[str]:
    """Names in ``root``/dvc.lock's ``stages`` that no stage of ``root``/dvc.yaml has."""
    from dvc.repo import Repo
    from dvc.utils.serialize import load_yaml

    lock = load_yaml(str(root / "dvc.lock"))
    with Repo(str(root)) as repo:
        names = {stage.name for stage in repo.index.stages  # the root dvc.yaml's; `addressing` is cwd-relative
                 if Path(stage.dvcfile.path).resolve() == (root / "dvc.yaml").resolve()}
    return [name for name in lock.get("stages", {}) if name not in names]


def prune(root: Path) -> list[str]:
    """Remove the :func:`stale_entries` from ``root``/dvc.lock; returns their names."""
    from dvc.utils.serialize import modify_yaml

    stale = stale_entries(root)
    if stale:
        with modify_yaml(str(root / "dvc.lock")) as lock:
            for name in stale:
                del lock["stages"][name]
    return stale


if __name__ == "__main__":
    dropped = prune(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("."))
    print(f"dropped {len(dropped)} stale entr{'y' if len(dropped) == 1 else 'ies'}" +
          (": " + ", ".join(dropped) if dropped else ""))
