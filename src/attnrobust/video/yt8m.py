"""YouTube-8M frame-level TFRecords, read and written without TensorFlow (PyPI ``tfrecord``).

A frame-level record is a ``tf.train.SequenceExample``:

* context: ``id`` (bytes, 4-character anonymised id), ``labels`` (int64 list, may be empty);
* feature_lists: ``rgb`` (one ``bytes`` of 1024 quantised uint8 per frame) and ``audio``
  (one ``bytes`` of 128 uint8 per frame); one frame per second, at most 300.

:func:`convert_yt8m` turns record files into the shard format of
:mod:`attnrobust.video.features` with ``dim = 1024 + 128`` (rgb then audio, still quantised),
so training code reads raw-clip features and YouTube-8M features the same way.
The ``tfrecord`` reader does not check CRCs; a truncated file raises a :class:`UserError`.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from google.protobuf.message import DecodeError

from attnrobust.errors import UserError
from attnrobust.io import write_json
from attnrobust.runtime import progress
from attnrobust.video.features import FeatureItem, ShardWriter, empty_dir

log = logging.getLogger(__name__)

RGB_DIM = 1024  # PCA'd Inception pool_3, quantised
AUDIO_DIM = 128  # VGGish-style audio embedding, quantised
MAX_FRAMES = 300  # YouTube-8M keeps at most 300 one-second frames
# Shard file prefix -> our split name. YT8M's own "test" partition has no public labels,
# so its labelled held-out "validate" partition plays the test split here.
SPLIT_OF_PREFIX = {"train": "train", "validate": "test"}
RECORD_NAME = re.compile(r"^([a-z]+)\d*\.tfrecord$")


class FrameRecord(NamedTuple):
    """One video of a frame-level record file."""

    id: str
    labels: list[int]
    rgb: np.ndarray  # (T, 1024) uint8
    audio: np.ndarray  # (T, 128) uint8


def write_frame_records(path: Path, videos: Iterable[FrameRecord], index: bool = False) -> int:
    """Write ``videos`` as SequenceExamples to ``path`` (plus ``.tfindex`` if ``index``); returns the count."""
    import tfrecord

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer, n = tfrecord.TFRecordWriter(str(path)), 0
    try:
        for video in videos:
            rgb, audio = np.asarray(video.rgb, np.uint8), np.asarray(video.audio, np.uint8)
            if rgb.shape[1:] != (RGB_DIM,) or audio.shape[1:] != (AUDIO_DIM,) or len(rgb) != len(audio):
                raise ValueError(f"{video.id}: rgb (T, {RGB_DIM}) and audio (T, {AUDIO_DIM}) needed, "
                                 f"got {rgb.shape} and {audio.shape}")
            context = {"id": (video.id.encode(), "byte"), "labels": (sorted(int(c) for c in video.labels), "int")}
            frames = {"rgb": ([f.tobytes() for f in rgb], "byte"), "audio": ([f.tobytes() for f in audio], "byte")}
            writer.write(context, frames)
            n += 1
    finally:
        writer.close()
    if index:
        from tfrecord.tools.tfrecord2idx import create_index

        create_index(str(path), str(path.with_suffix(".tfindex")))
    return n


def _frames(values: list, dim: int, max_frames: int, where: str) -> np.ndarray:
    """Per-frame bytes (or, with old ``tfrecord``, uint8 arrays) -> (T, dim) uint8, first ``max_frames``."""
    frames = [np.frombuffer(bytes(v), np.uint8) for v in values[:max_frames]]
    bad = [len(f) for f in frames if len(f) != dim]
    if bad:
        raise UserError(f"{where}: a frame has {bad[0]} bytes, expected {dim}")
    return np.stack(frames) if frames else np.zeros((0, dim), np.uint8)


def _parse(context: dict, seq: dict, max_frames: int, where: str) -> FrameRecord:
    """One decoded (context, feature_lists) pair -> :class:`FrameRecord`."""
    if "id" not in context:
        raise UserError(f"{where}: record without an 'id' (is this a frame-level file?)")
    vid = context["id"]
    vid = bytes(vid).decode() if not isinstance(vid, str) else vid
    labels = [int(c) for c in np.atleast_1d(context.get("labels", np.zeros(0, np.int64)))]
    rgb = _frames(seq.get("rgb", []), RGB_DIM, max_frames, f"{where} {vid} rgb")
    audio = _frames(seq.get("audio", []), AUDIO_DIM, max_frames, f"{where} {vid} audio")
    return FrameRecord(vid, labels, rgb, audio[:len(rgb)])


def read_frame_records(paths: Path | Sequence[Path], max_frames: int = MAX_FRAMES) -> Iterator[FrameRecord]:
    """Yield every video of the frame-level record file(s) ``paths``, truncated to ``max_frames``."""
    import tfrecord

    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        loader = tfrecord.tfrecord_loader(str(path), None, None, sequence_description=["rgb", "audio"])
        try:
            for i, (context, seq) in enumerate(loader):
                yield _parse(context, seq, max_frames, f"{path} record {i}")
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise UserError(f"{path}: not a readable YouTube-8M frame-level file ({exc})") from exc
        # Truncated files fail in the framing (RuntimeError), garbage lengths in allocation
        # (OverflowError/MemoryError), damaged payloads in protobuf parsing (DecodeError).
        except (RuntimeError, OverflowError, MemoryError, DecodeError) as exc:
            raise UserError(f"{path}: corrupt or truncated record file ({exc!r}); re-download it") from exc


def record_files(records_dir: Path) -> dict[str, list[Path]]:
    """{split: sorted record files} from ``train*.tfrecord`` / ``validate*.tfrecord`` names."""
    records_dir = Path(records_dir)
    out: dict[str, list[Path]] = {}
    for path in sorted(records_dir.glob("*.tfrecord")):
        match = RECORD_NAME.match(path.name)
        if not match or match.group(1) not in SPLIT_OF_PREFIX:
            raise UserError(f"{path}: expected train*.tfrecord or validate*.tfrecord (the YouTube-8M "
                            f"test partition has no labels); move other files out of {records_dir}")
        out.setdefault(SPLIT_OF_PREFIX[match.group(1)], []).append(path)
    if not out:
        raise UserError(f"{records_dir}: no *.tfrecord files (download partition=2/frame/{{train,validate}})")
    return out


def convert_yt8m(records_dir: Path, out_dir: Path, num_classes: int, max_frames: int, shard_size: int) -> dict:
    """Convert frame-level records into feature shards + ``meta.json`` (see :mod:`.features`).

    Features are rgb and audio concatenated per frame, (T, 1152) uint8, still quantised.
    Returns ``{"splits": {split: n}}``.
    """
    out_dir = empty_dir(out_dir)
    files = record_files(records_dir)
    writer = ShardWriter(out_dir, num_classes=num_classes, dim=RGB_DIM + AUDIO_DIM, max_frames=max_frames,
                         shard_size=shard_size)
    for split, paths in files.items():
        for video in progress(read_frame_records(paths, max_frames), desc=f"yt8m {split}", unit="video"):
            features = np.concatenate([video.rgb, video.audio], axis=1)  # (T, 1152)
            writer.add(FeatureItem(video.id, split, features, video.labels))
    counts = writer.close(["train", "test"])
    write_json(out_dir / "meta.json", {
        "source": "yt8m", "classes": [str(c) for c in range(num_classes)], "num_classes": num_classes,
        "dim": RGB_DIM + AUDIO_DIM, "max_frames": max_frames, "splits": counts, "skipped": [],
    })
    log.info("converted %s", counts)
    return {"splits": counts}
