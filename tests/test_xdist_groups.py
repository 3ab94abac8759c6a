"""`make test`'s `-n 2 --dist loadgroup` keeps a group of tests on one worker (tests/xdist_groups.py)."""
import os
import subprocess
import sys

from conftest import ROOT

GROUPED = '''
import os, pytest
pytestmark = pytest.mark.xdist_group("pipeline")
@pytest.mark.parametrize("i", range(6))
def test_grouped(i, tmp_path_factory):
    open(os.path.join({out!r}, f"g{{i}}"), "w").write(os.environ["PYTEST_XDIST_WORKER"])
'''
FREE = '''
import time, pytest
@pytest.mark.parametrize("i", range(6))
def test_free(i):
    time.sleep(0.2)
'''


def test_loadgroup_runs_a_marked_group_on_one_worker(tmp_path):
    out = tmp_path / "workers"
    out.mkdir()
    (tmp_path / "test_grouped.py").write_text(GROUPED.format(out=str(out)))
    (tmp_path / "test_free.py").write_text(FREE)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-p", "xdist_groups",
                           "-p", "no:cacheprovider", "-q", str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    workers = {p.read_text() for p in out.iterdir()}
    assert len(list(out.iterdir())) == 6 and len(workers) == 1, workers
