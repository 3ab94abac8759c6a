"""Reading the frame-feature shards that ``features`` writes, and YouTube-8M's 8-bit quantisation.

Training and attack stages read features through this module only, so a change to feature
extraction (decord, the backbone, PCA) re-runs the ``features`` stage, not every video model.
Layout: :mod:`attnrobust.video.features`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from attnrobust.errors import UserError
from attnrobust.io import read_json
from attnrobust.units import YT8M_DEQUANT_BIAS, YT8M_LEVEL, YT8M_MAX, YT8M_MIN

# YouTube-8M quantisation (feature_extractor/extract_tfrecords_main.py, utils.Dequantize).
# The constants live in attnrobust.units, so one place converts levels to feature units.
MIN_QUANTIZED, MAX_QUANTIZED = YT8M_MIN, YT8M_MAX
QUANT_STEP = YT8M_LEVEL  # one 8-bit level in feature units (4/255)
_DEQUANT_BIAS = YT8M_DEQUANT_BIAS  # + half a level: 4/512 - 2


def quantize(x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """``round((clip(x, -2, 2) + 2) * 255 / 4)`` as uint8 (round half to even, like the YT8M extractor)."""
    scale = 255.0 / (MAX_QUANTIZED - MIN_QUANTIZED)
    if isinstance(x, torch.Tensor):
        return torch.round((x.clamp(MIN_QUANTIZED, MAX_QUANTIZED) - MIN_QUANTIZED) * scale).to(torch.uint8)
    return np.round((np.clip(x, MIN_QUANTIZED, MAX_QUANTIZED) - MIN_QUANTIZED) * scale).astype(np.uint8)


def dequantize(q: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """``q * 4/255 + 4/512 - 2`` as float32 (YT8M ``utils.Dequantize``: bin centre plus half a level).

    Not an exact inverse of :func:`quantize`: ``|x - dequantize(quantize(x))| <= 0.0157`` on [-2, 2],
    while ``quantize(dequantize(q)) == q`` exactly.
    """
    if isinstance(q, torch.Tensor):
        return q.to(torch.float32) * QUANT_STEP + _DEQUANT_BIAS
    return np.asarray(q, dtype=np.float32) * np.float32(QUANT_STEP) + np.float32(_DEQUANT_BIAS)


@dataclass
class FeatureSplit:
    """One split in memory: quantised features, true lengths, multi-hot labels, ids."""

    rgb: np.ndarray  # (N, max_frames, dim) uint8
    num_frames: np.ndarray  # (N,) int64
    labels: np.ndarray  # (N, C) uint8 multi-hot
    ids: list[str]


def read_feature_split(features_dir: Path, split: str) -> FeatureSplit:
    """Read every shard of ``split`` (dequantise ``rgb`` with :func:`dequantize` before use)."""
    features_dir = Path(features_dir)
    meta_path = features_dir / "meta.json"
    if not meta_path.is_file():
        raise UserError(f"{meta_path}: not found; run `dvc repro features` first")
    meta = read_json(meta_path)
    if split not in meta["splits"]:
        raise UserError(f"{features_dir}: no split '{split}' (have: {', '.join(meta['splits'])})")
    parts = []
    for shard in sorted(features_dir.glob(f"{split}-*.npz")):
        try:
            with np.load(shard, allow_pickle=False) as z:
                parts.append({k: z[k] for k in ("rgb", "num_frames", "labels", "ids")})
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{shard}: unreadable feature shard ({exc}); re-run `dvc repro -f features`") from exc
    if not parts:
        raise UserError(f"{features_dir}: no {split}-*.npz shards; re-run `dvc repro -f features`")
    out = FeatureSplit(*(np.concatenate([p[k] for p in parts]) for k in ("rgb", "num_frames", "labels")),
                       ids=[str(i) for p in parts for i in p["ids"]])
    if len(out.ids) != meta["splits"][split]:
        raise UserError(f"{features_dir}: split '{split}' has {len(out.ids)} clips, meta.json says "
                        f"{meta['splits'][split]}; re-run `dvc repro -f features`")
    return out
