"""List video clips with their labels and splits, and decode frames with decord.

Two on-disk layouts are understood:

* **UCF-101** (``root/UCF-101/<Class>/*.avi`` + ``root/ucfTrainTestlist/``): the label is the
  index of the clip's *folder* in sorted order, as torchvision's ``UCF101`` does; ``classInd.txt``
  is never used for labels (its order differs for HammerThrow/Hammering and JumpRope/JumpingJack)
  and file names are never parsed (``HandstandPushups/v_HandStandPushups_*``). Splits come
  from ``trainlist0{fold}.txt`` / ``testlist0{fold}.txt`` (CRLF stripped). If
  ``UCF-101/multilabels.json`` exists (synthetic data only) it gives each clip's full label set.
* **Kinetics** (``root/<split>/<label>/<ytid>_<start:06>_<end:06>.mp4``): split and label from
  the folders; labels are indices into the sorted union of label folders.

decord must be imported after torch (decord first, then CUDA, segfaults), so it is imported
lazily here, after torch.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attnrobust.errors import UserError
from attnrobust.io import read_json

KINETICS_NAME = re.compile(r"^.+_\d{6}_\d{6}\.(mp4|avi)$")
KINETICS_SPLITS = ("train", "val", "test")


class UnreadableVideoError(UserError):
    """decord cannot open or decode a clip (corrupt, truncated, empty, unsupported codec)."""


@dataclass(frozen=True)
class Clip:
    """One video file and what we know about it."""

    path: Path  # the file on disk
    clip_id: str  # path relative to the dataset's clip root, e.g. "HandstandPushups/v_HandStandPushups_g01_c01.avi"
    split: str  # "train" or "test" (UCF-101); "train" / "val" / "test" (Kinetics)
    labels: tuple[int, ...]  # class ids, the folder's class first


def _read_list(path: Path) -> list[str]:
    """Non-empty lines of a split file, first space-separated field, CRLF stripped."""
    if not path.is_file():
        raise UserError(f"{path}: split file not found; extract UCF101TrainTestSplits-RecognitionTask.zip "
                        "next to UCF-101/")
    return [line.strip().split(" ")[0] for line in path.read_text().splitlines() if line.strip()]


def _ucf_labels(clip_root: Path, rels: list[str], classes: list[str]) -> dict[str, tuple[int, ...]]:
    """Label tuple per clip: the folder's index, or the full set from ``multilabels.json`` if present."""
    index = {name: i for i, name in enumerate(classes)}
    labels = {rel: (index[rel.split("/")[0]],) for rel in rels}
    extra_path = clip_root / "multilabels.json"
    if extra_path.is_file():
        extra = read_json(extra_path)
        for rel, primary in labels.items():
            if rel not in extra or primary[0] not in extra[rel]:
                raise UserError(f"{extra_path}: no label set containing the folder class for {rel}")
            labels[rel] = primary + tuple(sorted(set(extra[rel]) - set(primary)))
    return labels


def list_ucf101(root: Path, fold: int = 1) -> tuple[list[str], list[Clip]]:
    """Classes (sorted folder names) and the clips of ``fold``'s train and test lists.

    ``root`` holds ``UCF-101/`` and ``ucfTrainTestlist/``. Clips on disk that no split lists
    are ignored (as torchvision does); a listed clip missing on disk is an error.
    """
    root = Path(root)
    clip_root, list_dir = root / "UCF-101", root / "ucfTrainTestlist"
    if not clip_root.is_dir():
        raise UserError(f"{clip_root}: not found; expected UCF101.rar extracted under {root}")
    classes = sorted(p.name for p in clip_root.iterdir() if p.is_dir())
    splits = {s: _read_list(list_dir / f"{s}list{fold:02d}.txt") for s in ("train", "test")}
    missing = [rel for rels in splits.values() for rel in rels if not (clip_root / rel).is_file()]
    if missing:
        raise UserError(f"{clip_root}: {len(missing)} clip(s) in the fold-{fold} split files are missing, "
                        f"e.g. {missing[0]}; re-extract UCF101.rar")
    labels = _ucf_labels(clip_root, [r for rels in splits.values() for r in rels], classes)
    clips = [Clip(clip_root / rel, rel, split, labels[rel]) for split, rels in splits.items() for rel in rels]
    return classes, clips


def list_kinetics(root: Path) -> tuple[list[str], list[Clip]]:
    """Classes (sorted label folders over all splits) and clips of ``root/{train,val,test}/<label>/``."""
    root = Path(root)
    split_dirs = [root / s for s in KINETICS_SPLITS if (root / s).is_dir()]
    if not split_dirs:
        raise UserError(f"{root}: no train/ val/ or test/ folder (expected the Kinetics layout)")
    classes = sorted({p.name for d in split_dirs for p in d.iterdir() if p.is_dir()})
    index = {name: i for i, name in enumerate(classes)}
    clips = []
    for split_dir in split_dirs:
        for path in sorted(split_dir.glob("*/*")):
            if path.is_file() and KINETICS_NAME.match(path.name):
                rel = path.relative_to(split_dir).as_posix()
                clips.append(Clip(path, rel, split_dir.name, (index[path.parent.name],)))
    return classes, clips


def list_clips(root: Path, fold: int = 1) -> tuple[list[str], list[Clip]]:
    """UCF-101 layout if ``root/UCF-101`` exists, else the Kinetics layout."""
    root = Path(root)
    return list_ucf101(root, fold) if (root / "UCF-101").is_dir() else list_kinetics(root)


def sample_indices(num_frames: int, src_fps: float, fps: float, max_frames: int | None = None) -> np.ndarray:
    """Frame indices at ``fps`` from a stream of ``num_frames`` at ``src_fps``: frames at t = 0, 1/fps, ...

    Never upsamples (``fps >= src_fps`` keeps every frame); keeps the first ``max_frames``.
    """
    step = max(src_fps / fps, 1.0) if src_fps > 0 else 1.0
    indices = np.floor(np.arange(0, num_frames, step) + 1e-6).astype(np.int64)
    indices = indices[indices < num_frames]
    return indices[:max_frames] if max_frames is not None else indices


def read_frames(path: Path, fps: float, max_frames: int | None = None) -> np.ndarray:
    """Decode the frames of ``path`` sampled at ``fps``: (T, H, W, 3) uint8 RGB.

    One decord ``VideoReader`` per clip, dropped afterwards (decord readers leak when reused).
    Raises :class:`UnreadableVideoError` if decord cannot open or decode the file.
    """
    import torch  # noqa: F401  (must precede decord)
    import decord

    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
        indices = sample_indices(len(reader), reader.get_avg_fps(), fps, max_frames)
        if len(indices) == 0:
            raise UnreadableVideoError(f"{path}: no frames")
        frames = reader.get_batch(indices.tolist()).asnumpy()  # (T, H, W, 3), a copy
        del reader  # drop the reader (and its decoder threads) now
    except (RuntimeError, decord.DECORDError) as exc:
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise UnreadableVideoError(f"{path}: decord cannot read it ({first_line})") from exc
    return frames
