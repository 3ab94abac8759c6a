"""Shared fixtures: tiny models and data, and the repository root."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

pytest_plugins = ["xdist_groups"]  # `--dist loadgroup` groups again under pytest 9.2 (tests/xdist_groups.py)

ROOT = Path(__file__).resolve().parents[1]


class TinyNet(nn.Module):
    """A small deterministic classifier on (B, 3, 8, 8) inputs in [0, 1]."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(8 * 8 * 8, num_classes))

    def forward(self, x):
        return self.net(x)


@pytest.fixture
def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture
def tiny_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(32, 3, 8, 8, generator=g), torch.randint(0, 5, (32,), generator=g)


def write_separable_dataset(out: Path, n_train: int, n_test: int, shard_size: int = 64) -> Path:
    """3 separable classes (colour of the central square), 16 px, ROI mask on the square, written
    to ``out`` in the real shard format; the same bytes for the same sizes."""
    import numpy as np

    from attnrobust.data.prepared import PreparedSplit, write_prepared

    rng = np.random.default_rng(0)

    def split(n: int) -> PreparedSplit:
        labels = np.arange(n) % 3
        images = rng.integers(0, 60, (n, 3, 16, 16), dtype=np.uint8)
        for c in range(3):
            images[labels == c, c, 4:12, 4:12] += 180  # class = colour of the central square
        masks = np.zeros((n, 16, 16), np.uint8)
        masks[:, 4:12, 4:12] = 1
        return PreparedSplit(images, masks, labels, [f"img{i:03d}" for i in range(n)])

    out.mkdir(parents=True)
    write_prepared(out, {"train": split(n_train), "test": split(n_test)}, dataset="gtsrb", classes=["a", "b", "c"],
                   shard_size=shard_size)
    return out


@pytest.fixture
def prepared_dir(tmp_path) -> Path:
    """A tiny prepared dataset (3 separable classes, 16 px) in the real shard format."""
    return write_separable_dataset(tmp_path / "prepared", 48, 24, shard_size=20)


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> tuple[Path, Path]:
    """The whole pipeline on the tiny profile, run once per session with `dvc repro` in a fresh git
    repo and committed as ``baseline``: ``(repo, pristine)``. ``repo`` is for the end-to-end tests,
    which go on to run experiments in it; ``pristine`` is a copy taken at the baseline, never
    changed, for tests that copy it again (tests/test_dvc_workflows.py compares it with a repo run
    from scratch, and runs the queue in a copy of it). ``train.threads: 1`` everywhere: parallel
    queue workers then do not compete for cores, and every tiny repo's numbers are comparable."""
    import shutil

    from tiny import commit, make_repo, run

    top = tmp_path_factory.mktemp("pipeline")
    repo = make_repo(top / "repo", params={"train": {"threads": 1}})
    run(["dvc", "repro"], repo)
    commit(repo, "baseline")
    pristine = top / "pristine"
    shutil.copytree(repo, pristine, symlinks=True)
    return repo, pristine
