"""Interrupted work resumes: a training stage and a download, each killed with SIGKILL while running.

SIGKILL, not an exception: nothing in the process gets to clean up, as when a machine is
preempted or a job runs out of time. The training stage then resumes from its last per-epoch
state and ends with the same weights (and the same dvclive curves) as an uninterrupted run; the
download resumes its ``.part`` file with an HTTP Range request.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from attnrobust.checkpoint import read_checkpoint
from attnrobust.data.download import download
from attnrobust.data.prepared import PreparedSplit, write_prepared
from attnrobust.experiment import parse_experiment
from attnrobust.training import TrainConfig, train_experiment

from conftest import ROOT

pytestmark = pytest.mark.slow
TRAIN = {"epochs": 3, "batch_size": 16, "lr": 0.01, "weight_decay": 0.0, "seeds": [0], "device": "cpu", "threads": 1,
         "precision": "auto", "nproc": 1}
EXPERIMENT = {"dataset": "gtsrb", "method": "pgd_at", "model": "cnn", "model_args": {"width": 4}, "train_eps": 8,
              "train_steps": 2, "train_step_size": 4.0}


def _split(rng: np.random.Generator, n: int) -> PreparedSplit:
    labels = np.arange(n) % 3
    images = rng.integers(0, 60, (n, 3, 16, 16), dtype=np.uint8)
    for c in range(3):
        images[labels == c, c, 4:12, 4:12] += 180
    masks = np.zeros((n, 16, 16), np.uint8)
    masks[:, 4:12, 4:12] = 1
    return PreparedSplit(images, masks, labels, [f"img{i:04d}" for i in range(n)])


def _prepared(root: Path, n_train: int, n_test: int) -> Path:
    rng = np.random.default_rng(0)
    (root / "prep").mkdir()
    write_prepared(root / "prep", {"train": _split(rng, n_train), "test": _split(rng, n_test)}, dataset="gtsrb",
                   classes=["a", "b", "c"], shard_size=4096)
    return root / "prep"


def _kill_mid_epoch(cmd: list[str], resume: Path, after_line: str, delay: float, cwd: Path) -> list[str]:
    """Start ``cmd``; once it printed ``after_line`` and saved its resume state, SIGKILL it ``delay`` s later."""
    proc = subprocess.Popen(cmd, cwd=cwd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    watchdog = threading.Timer(600, proc.kill)  # a hung stage must not hang the test run
    watchdog.start()
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if after_line in line:
                while not resume.is_file() and proc.poll() is None:
                    time.sleep(0.01)
                time.sleep(delay)
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait()
    finally:
        watchdog.cancel()
    assert proc.returncode == -signal.SIGKILL, f"the stage ended on its own:\n{''.join(lines)}"
    return lines


def _curves(live: Path) -> dict[str, list[list[str]]]:
    """dvclive's TSVs without the wall-clock timestamp column."""
    out = {}
    for tsv in sorted((live / "plots" / "metrics").rglob("*.tsv")):
        rows = [line.split("\t") for line in tsv.read_text().splitlines()]
        keep = [i for i, name in enumerate(rows[0]) if name != "timestamp"]
        out[str(tsv.relative_to(live))] = [[row[i] for i in keep] for row in rows]
    return out


def test_training_stage_killed_mid_epoch_resumes_to_the_same_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # dvclive inspects the git repo around the cwd
    _prepared(tmp_path, 480, 24)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train": TRAIN, "experiments": {"tiny": EXPERIMENT}}))
    # the uninterrupted run, in this process (same code, same seed, one thread: the same numbers)
    exp = parse_experiment("tiny", EXPERIMENT, "test")

    def run(epochs: int, name: str) -> float:
        start = time.perf_counter()
        train_experiment(exp, TrainConfig(**{**TRAIN, "epochs": epochs}), tmp_path / "prep", tmp_path / name,
                         tmp_path / f"live_{name}")
        return time.perf_counter() - start

    run(1, "warm")  # the first run in a process pays for imports and caches: keep it out of the timing
    one, full = run(1, "one"), run(TRAIN["epochs"], "full")
    epoch_s = (full - one) / (TRAIN["epochs"] - 1)  # one epoch, without the start-up both runs pay
    resume = tmp_path / ".cache" / "resume" / "tiny.pt"
    cmd = [sys.executable, str(ROOT / "stages" / "train.py"), "--experiment", "tiny", "--prepared", "prep",
           "--out", "models/tiny", "--live", "live", "--resume", str(resume), "--params", "params.yaml"]
    _kill_mid_epoch(cmd, resume, "epoch 1/3", delay=epoch_s / 3, cwd=tmp_path)
    saved = torch.load(resume, map_location="cpu", weights_only=True)
    assert saved["state"]["epoch"] == 1, "killed after epoch 2 had finished: not mid-epoch"
    assert not (tmp_path / "models" / "tiny").exists()  # nothing half-written where DVC looks

    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from" in proc.stderr and "after epoch 1" in proc.stderr
    assert "epoch 1/3" not in proc.stderr  # epoch 1 was not trained again
    full, resumed = read_checkpoint(tmp_path / "full")["state_dict"], read_checkpoint(tmp_path / "models" / "tiny")
    assert all(torch.equal(full[k], resumed["state_dict"][k]) for k in full)
    assert _curves(tmp_path / "live") == _curves(tmp_path / "live_full")  # epoch 1 is in the curves too
    assert not resume.exists()  # finished: the checkpoint is the result


def test_unreadable_resume_state_starts_over(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _prepared(tmp_path, 32, 8)
    resume = tmp_path / "resume.pt"
    resume.write_bytes(b"PK\x03\x04 truncated")
    cfg = TrainConfig(**{**TRAIN, "epochs": 1})
    train_experiment(parse_experiment("tiny", EXPERIMENT, "test"), cfg, tmp_path / "prep", tmp_path / "m",
                     tmp_path / "live", resume_file=resume)
    assert "unreadable resume state" in capsys.readouterr().err
    assert (tmp_path / "m" / "model.pt").is_file()


# --------------------------------------------------------------------------- download


class _SlowFiles(BaseHTTPRequestHandler):
    """Serves ``payload`` with Range support, 4 KiB every 10 ms, so a download can be killed midway."""

    payload = b""
    ranges: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        rng = self.headers.get("Range")
        type(self).ranges.append(rng)
        start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
        body = self.payload[start:]
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for i in range(0, len(body), 4096):
                self.wfile.write(body[i:i + 4096])
                time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client was killed

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_server():
    _SlowFiles.payload = os.urandom(400 * 1024)  # about 1 s at the throttled rate
    _SlowFiles.ranges = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _SlowFiles)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/archive.zip"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_download_killed_midway_resumes_from_its_part_file(slow_server, tmp_path):
    dest, md5 = tmp_path / "archive.zip", hashlib.md5(_SlowFiles.payload).hexdigest()
    part = dest.with_name("archive.zip.part")
    code = ("import sys; from attnrobust.data.download import download; "
            "download(sys.argv[1], sys.argv[2], sys.argv[3], chunk=4096)")
    proc = subprocess.Popen([sys.executable, "-c", code, slow_server, str(dest), md5])
    deadline = time.monotonic() + 60
    while not (part.is_file() and part.stat().st_size >= 64 * 1024) and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not dest.exists()
    kept = part.stat().st_size
    assert 0 < kept < len(_SlowFiles.payload)

    assert download(slow_server, dest, md5, chunk=4096, timeout=30) == dest
    assert _SlowFiles.ranges == [None, f"bytes={kept}-"]  # the second request asked only for the rest
    assert dest.read_bytes() == _SlowFiles.payload and not part.exists()
