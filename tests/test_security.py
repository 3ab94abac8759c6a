"""Security rules of the code base, checked on the source and on hostile files.

* checkpoints and resume states load with ``weights_only=True``: a pickle that would run code is
  refused with a clear message, and its code never runs;
* archives refuse members and links that escape the target (zip and tar: test_download.py; the
  links an external rar extractor leaves behind: here);
* downloads are https with checksums (test_download.py); no shell, no unsafe deserialisers.

The source scan parses every module of ``src/`` and ``stages/`` (an AST, not a grep, so comments
and docstrings do not count) and names the file and line of any offending call.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch

from attnrobust.checkpoint import FORMAT, load_model
from attnrobust.data.download import safe_extract
from attnrobust.errors import UserError

from conftest import ROOT

SOURCES = sorted([*(ROOT / "src" / "attnrobust").rglob("*.py"), *(ROOT / "stages").glob("*.py")])
# the one module that may open network connections and unpack archives (its own checks guard them)
DOWNLOAD_MODULE = ROOT / "src" / "attnrobust" / "data" / "download.py"


def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func), {k.arg: k.value for k in node.keywords}


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{node.lineno}"


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def test_every_torch_load_is_weights_only():
    found = 0
    for path in SOURCES:
        for node, func, kw in _calls(path):
            if func in ("torch.load", "load") and (func == "torch.load" or "weights_only" in kw):
                found += 1
                assert _is_true(kw.get("weights_only")), f"{_where(path, node)}: torch.load without weights_only=True"
    assert found >= 2  # checkpoints and resume states: the scan does see them


def test_no_shell_and_no_unsafe_deserialisers():
    banned = {"os.system", "os.popen", "pickle.load", "pickle.loads", "eval", "exec", "marshal.loads",
              "yaml.load", "yaml.unsafe_load", "torch.jit.load", "dill.load"}
    for path in SOURCES:
        for node, func, kw in _calls(path):
            assert func not in banned, f"{_where(path, node)}: {func}"
            assert not _is_true(kw.get("shell")), f"{_where(path, node)}: shell=True"
            assert not _is_true(kw.get("allow_pickle")), f"{_where(path, node)}: allow_pickle=True"


def test_network_and_archive_access_only_in_the_download_module():
    guarded = {"urllib.request.urlopen", "urlopen", "build_opener", "urllib.request.build_opener", "extractall",
               "tf.extractall", "zf.extractall", "tarfile.open", "zipfile.ZipFile.extractall", "requests.get",
               "http.client.HTTPSConnection", "http.client.HTTPConnection"}
    for path in SOURCES:
        if path == DOWNLOAD_MODULE:
            continue
        for node, func, _ in _calls(path):
            assert func not in guarded and not func.endswith(".extractall"), (
                f"{_where(path, node)}: {func} outside data/download.py (use download() / safe_extract())")


class _RunsCode:
    """Unpickling this calls ``open(marker, "w")``: the canonical pickle payload, made harmless."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "model.pt"
    torch.save({"format": FORMAT, "model": {"name": "cnn", "kwargs": {}}, "meta": {"experiment": "x"},
                "state_dict": {}, "payload": _RunsCode(marker)}, path)
    with pytest.raises(UserError, match="not a loadable attnrobust checkpoint"):
        load_model(path)
    assert not marker.exists()


def test_resume_state_that_would_run_code_is_ignored(tmp_path, prepared_dir, monkeypatch, capsys):
    from attnrobust.experiment import parse_experiment
    from attnrobust.training import TrainConfig, train_experiment

    monkeypatch.chdir(tmp_path)  # dvclive inspects the git repo around the cwd
    marker, resume = tmp_path / "pwned", tmp_path / "resume.pt"
    torch.save({"fingerprint": {}, "state": _RunsCode(marker)}, resume)
    exp = parse_experiment("tiny", {"dataset": "gtsrb", "method": "standard", "model": "cnn",
                                    "model_args": {"width": 4}}, "test")
    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.01, weight_decay=0.0, seeds=[0], device="cpu", threads=1)
    train_experiment(exp, cfg, prepared_dir, tmp_path / "m", tmp_path / "live", resume_file=resume)
    assert "unreadable resume state" in capsys.readouterr().err and not marker.exists()


def test_rar_extractor_leaving_a_link_outside_the_target_is_refused(tmp_path, monkeypatch):
    """unar/unrar run outside Python's control: what they leave behind is checked before it is kept."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "unar"  # "extracts" a clip and a symlink to a folder outside the target
    fake.write_text('#!/bin/sh\nwhile [ "$1" != "-output-directory" ]; do shift; done\n'
                    'mkdir -p "$2/UCF-101/YoYo" && printf avi > "$2/UCF-101/YoYo/v_YoYo_g01_c01.avi"\n'
                    'ln -s /etc "$2/UCF-101/escape"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "UCF101.rar").write_bytes(b"Rar!")
    with pytest.raises(UserError, match="links outside the target"):
        safe_extract(tmp_path / "UCF101.rar", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["UCF101.rar", "bin"]  # no output, no staging left
