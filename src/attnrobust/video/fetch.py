"""fetch@video and features: where the video branch's raw data comes from, and how it becomes features.

``data.video.source`` picks the raw kind: ``clips`` (UCF-101 or Kinetics layout, decoded with
decord; synthetic by default) or ``yt8m`` (YouTube-8M frame-level TFRecords, already features).
"""
from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from attnrobust.errors import UserError
from attnrobust.io import replace_dir
from attnrobust.video.synthetic import VideoSynthConfig, generate_ucf_like

YT8M_CLASSES = 3862  # the 2018 (v2) vocabulary, the starter code's default


@dataclass(frozen=True)
class VideoDataConfig:
    source: Literal["clips", "yt8m"] = "clips"  # clips: videos decoded with decord; yt8m: frame-level TFRecords
    yt8m_dir: str = ""  # data.source real + yt8m: folder of TFRecords fetched with YouTube-8M's download.py
    synthetic: VideoSynthConfig = field(default_factory=VideoSynthConfig)  # the embedded clips


def fetch_video(out_dir: Path, *, source: Literal["synthetic", "real"], cfg: VideoDataConfig, seed: int) -> None:
    """Write the raw video data into ``out_dir`` (replaced atomically)."""
    if cfg.source == "yt8m":
        if source == "synthetic":
            raise UserError("data.video.source: yt8m has no synthetic version; use source: clips, or "
                            "data.source: real with data.video.yt8m_dir")
        _copy_records(Path(cfg.yt8m_dir), Path(out_dir))
    elif source == "real":
        from attnrobust.data.sources import fetch_real

        fetch_real("ucf101", Path(out_dir))
    else:
        with replace_dir(Path(out_dir)) as staging:
            generate_ucf_like(staging, cfg.synthetic, seed)
    print(f"[fetch video] {source} {cfg.source} data in {out_dir}", file=sys.stderr)


def _copy_records(src: Path, out_dir: Path) -> None:
    records = sorted(src.glob("*.tfrecord")) if src.is_dir() else []
    if not records:
        raise UserError(f"data.video.yt8m_dir: no *.tfrecord files in '{src}'; download frame-level data with "
                        "YouTube-8M's download.py (README: real data) and point yt8m_dir at that folder")
    with replace_dir(out_dir) as staging:
        for path in records:
            shutil.copy2(path, staging / path.name)


def build_features(raw_dir: Path, out_dir: Path, cfg, seed: int) -> dict:
    """Frame features from clips (decord + frozen backbone + YT8M quantisation), or converted TFRecords."""
    from attnrobust.video.features import extract_features
    from attnrobust.video.yt8m import convert_yt8m

    with replace_dir(Path(out_dir)) as staging:
        if any(Path(raw_dir).glob("*.tfrecord")):
            return convert_yt8m(Path(raw_dir), staging, YT8M_CLASSES, cfg.max_frames, cfg.shard_size)
        return extract_features(Path(raw_dir), staging, cfg, seed)
