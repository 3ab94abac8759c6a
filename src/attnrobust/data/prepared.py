"""Prepared datasets: fixed-size images, foreground masks and labels, in sharded ``.npz`` files.

Layout of a prepared directory (written by the ``masks@<dataset>`` stage)::

    meta.json                 {"dataset", "classes", "image_size", "splits": {split: n}, "skipped": [...]}
    <split>-000.npz ...       images uint8 (N, 3, H, W), masks uint8 (N, H, W) in {0, 1},
                              labels int64 (N,), ids str (N,)

Shards hold at most ``shard_size`` samples, so DVC tracks a handful of files, not one per image.
``.npz`` is loaded with ``allow_pickle=False``: prepared data can never execute code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from attnrobust.errors import UserError
from attnrobust.io import read_json, save_npz, write_json


@dataclass
class PreparedSplit:
    """One split in memory. ``images`` (N, 3, H, W) uint8, ``masks`` (N, H, W) uint8, ``labels`` (N,)."""

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.labels)
        if not (len(self.images) == len(self.masks) == n and (not self.ids or len(self.ids) == n)):
            raise ValueError("images, masks, labels and ids must have the same length")


def write_prepared(
    out_dir: Path,
    splits: dict[str, PreparedSplit],
    *,
    dataset: str,
    classes: list[str],
    shard_size: int,
    extra_meta: dict | None = None,
) -> None:
    """Write ``splits`` as shards plus ``meta.json`` into ``out_dir`` (which must exist and be empty)."""
    out_dir = Path(out_dir)
    sizes = {}
    image_size = None
    for name, split in splits.items():
        sizes[name] = len(split.labels)
        if len(split.labels):
            image_size = int(split.images.shape[-1])
        for k, start in enumerate(range(0, max(len(split.labels), 1), shard_size)):
            sl = slice(start, start + shard_size)
            save_npz(
                out_dir / f"{name}-{k:03d}.npz",
                images=np.ascontiguousarray(split.images[sl], dtype=np.uint8),
                masks=np.ascontiguousarray(split.masks[sl], dtype=np.uint8),
                labels=np.asarray(split.labels[sl], dtype=np.int64),
                ids=np.asarray(split.ids[sl] if split.ids else [], dtype=str),
            )
    meta = {"dataset": dataset, "classes": list(classes), "image_size": image_size, "splits": sizes}
    meta.update(extra_meta or {})
    write_json(out_dir / "meta.json", meta)


def read_meta(prepared_dir: Path) -> dict:
    meta_path = Path(prepared_dir) / "meta.json"
    if not meta_path.is_file():
        raise UserError(f"{meta_path}: not found; run `dvc repro masks` to prepare the dataset first")
    return read_json(meta_path)


def read_split(prepared_dir: Path, split: str) -> PreparedSplit:
    """Read every shard of ``split`` as uint8 numpy arrays."""
    prepared_dir = Path(prepared_dir)
    meta = read_meta(prepared_dir)
    if split not in meta["splits"]:
        raise UserError(f"{prepared_dir}: no split '{split}' (have: {', '.join(meta['splits'])})")
    shards = sorted(prepared_dir.glob(f"{split}-*.npz"))
    parts = []
    for shard in shards:
        try:
            with np.load(shard, allow_pickle=False) as z:
                parts.append({k: z[k] for k in ("images", "masks", "labels", "ids")})
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{shard}: unreadable prepared shard ({exc}); re-run `dvc repro -f masks`") from exc
    parts = [p for p in parts if len(p["labels"])]
    if not parts:
        size = meta.get("image_size") or 0
        return PreparedSplit(np.zeros((0, 3, size, size), np.uint8), np.zeros((0, size, size), np.uint8),
                             np.zeros(0, np.int64), [])
    split_data = PreparedSplit(
        images=np.concatenate([p["images"] for p in parts]),
        masks=np.concatenate([p["masks"] for p in parts]),
        labels=np.concatenate([p["labels"] for p in parts]),
        ids=[str(i) for p in parts for i in p["ids"]],
    )
    if len(split_data.labels) != meta["splits"][split]:
        raise UserError(f"{prepared_dir}: split '{split}' has {len(split_data.labels)} samples, meta.json says "
                        f"{meta['splits'][split]}; re-run `dvc repro -f masks`")
    return split_data


def load_prepared(prepared_dir: Path | str, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Load a prepared split as tensors: images float (N, 3, H, W) in [0, 1], labels int64 (N,),
    foreground masks float (N, 1, H, W) in {0, 1}.

    >>> images, labels, masks = load_prepared("data/prepared/gtsrb", "test")
    """
    return to_tensors(read_split(Path(prepared_dir), split))


def to_tensors(s: PreparedSplit) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images in [0, 1] (N, 3, H, W), labels (N,), masks (N, 1, H, W)) from a uint8 split."""
    images = torch.from_numpy(s.images).float().div_(255.0)
    masks = torch.from_numpy(s.masks).float().unsqueeze(1)
    return images, torch.from_numpy(s.labels).long(), masks
