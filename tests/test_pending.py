"""Patches waiting in pending/ (pending/README.md) still apply to the code they were written for.

A patch that no longer applies is work lost quietly; this test makes the conflict the next
change's problem instead. code/*.json is left out of the patches (regenerated when one lands).
"""
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATCHES = sorted((ROOT / "pending").glob("*.patch"))


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs the git checkout")
@pytest.mark.parametrize("patch", PATCHES, ids=[p.name for p in PATCHES])
def test_pending_patch_applies_and_is_described(patch):
    proc = subprocess.run(["git", "apply", "--check", str(patch)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, f"{patch.name} no longer applies: {proc.stderr}"
    assert f"`{patch.name}`" in (ROOT / "pending" / "README.md").read_text(), "describe it in pending/README.md"
    assert "code/" not in {line.split()[-1][2:7] for line in patch.read_text().splitlines()
                           if line.startswith("diff --git")}, "regenerate code/ when landing instead"
