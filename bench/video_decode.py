"""Frame decoding for feature extraction: decord (what `features` uses) vs. PyAV, in one process.

Usage: `python bench/video_decode.py [raw_dir]` (default `data/raw/video`, written by
`dvc repro fetch@video`). Both decoders sample the same frames (`features.fps` of params.yaml)
from the same clips; the script checks they return identical frames and prints frames/s and the
ratio. Timings are medians of alternating repeats, because these machines are noisy.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch  # noqa: F401  (decord must be imported after torch)
import yaml

from attnrobust.video.decode import list_clips, read_frames, sample_indices

REPEATS = 3


def read_frames_pyav(path: Path, fps: float, max_frames: int | None) -> np.ndarray:
    """Decode every frame sequentially with PyAV and keep the sampled ones (PyAV cannot seek by index)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        wanted = sample_indices(len(frames), float(stream.average_rate), fps, max_frames)
    return np.stack([frames[i] for i in wanted])


def main() -> None:
    raw = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("data/raw/video")
    features = yaml.safe_load(Path("params.yaml").read_text())["features"]
    _, clips = list_clips(raw)
    paths = [c.path for c in clips]
    readers = {"decord": read_frames, "pyav": read_frames_pyav}
    times = {k: [] for k in readers}
    for _ in range(REPEATS):
        for name, read in readers.items():
            t0 = time.perf_counter()
            outputs = [read(p, features["fps"], features["max_frames"]) for p in paths]
            times[name].append(time.perf_counter() - t0)
            frames = sum(len(o) for o in outputs)
    same = all(np.array_equal(read_frames(p, features["fps"], features["max_frames"]),
                              read_frames_pyav(p, features["fps"], features["max_frames"])) for p in paths[:10])
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{len(paths)} clips, {frames} sampled frames per pass; identical frames on 10 clips: {same}")
    for name in readers:
        print(f"  {name:7s} median {med[name]:.2f}s  {frames / med[name]:8.0f} frames/s  "
              f"speed-up vs PyAV {med['pyav'] / med[name]:.2f}x")


if __name__ == "__main__":
    main()
