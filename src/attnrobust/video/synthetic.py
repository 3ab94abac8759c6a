"""A small synthetic UCF-101 look-alike whose labels live in a few informative frames.

On disk it is exactly the real layout, so the real parsers (:mod:`attnrobust.video.decode`,
decord, torchvision's ``UCF101``) run on it::

    UCF-101/<Class>/v_<Class>_gGG_cCC.avi          MPEG-4 Part 2 (XviD-like) in AVI, like the real clips
    UCF-101/HandstandPushups/v_HandStandPushups_gGG_cCC.avi   (real quirk: file name spelled differently)
    UCF-101/multilabels.json                       synthetic only, see below
    ucfTrainTestlist/classInd.txt                  "1 ApplyEyeMakeup" ... (1-based, case-insensitive order)
    ucfTrainTestlist/trainlist0{1,2,3}.txt         "<Class>/v_..._gGG_cCC.avi <classInd id>"
    ucfTrainTestlist/testlist0{1,2,3}.txt          "<Class>/v_..._gGG_cCC.avi"

Split and classInd files use CRLF line endings, so parsers must strip them. Test groups are
1-7 (fold 1), 8-14 (fold 2) and 15-21 (fold 3), as in the official splits.

**Content.** Every clip shows a smooth panning background with moving, solid-coloured clutter
objects (uninformative: the same distribution for every class). Each clip has a primary
class (its folder) plus 1-2 extra classes; every one of its labels is shown only as a
class-specific striped patch (class hue x stripe orientation) in ``informative_frames``
frames, in bursts of ``burst_frames`` consecutive frames aligned to multiples of
``burst_frames``, at random times and places, in disjoint bursts. Everything else is
distractor frames, so a model must find the few frames that matter: temporal attention helps.

**Labels.** The full label sets go to ``UCF-101/multilabels.json``,
``{"<Class>/<file>.avi": [label ids]}`` with ids = index in the *sorted* folder list (what
:mod:`attnrobust.video.decode` and torchvision use). Real UCF-101 has no such file; there
each clip has the single label of its folder.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attnrobust.io import write_json
from attnrobust.runtime import progress

# Real UCF-101 class names. The first six make small configurations exercise the quirks:
# HandstandPushups (file names say HandStand), and two pairs whose Python sort order differs
# from classInd's case-insensitive order (HammerThrow/Hammering, JumpRope/JumpingJack).
UCF_CLASS_NAMES = (
    "ApplyEyeMakeup", "HandstandPushups", "HammerThrow", "Hammering", "JumpRope", "JumpingJack",
    "Basketball", "YoYo", "Archery", "BenchPress", "Biking", "Diving", "Fencing", "Knitting",
    "Punch", "Rowing", "Skiing", "Surfing", "TaiChi", "TennisSwing", "Typing", "Drumming",
    "PlayingGuitar", "WalkingWithDog",
)
FILE_NAME_SPELLING = {"HandstandPushups": "HandStandPushups"}  # folder name -> name inside file names
TEST_GROUPS = {1: range(1, 8), 2: range(8, 15), 3: range(15, 22)}  # official: 25 groups, fold f tests 7 of them
NUM_GROUPS = 25


@dataclass(frozen=True)
class VideoSynthConfig:
    """Synthetic UCF-101-like clips. Sizes in pixels, durations in frames."""

    num_classes: int = 8  # action classes (folders), at most len(UCF_CLASS_NAMES) = 24
    clips_per_class: int = 48  # clips per folder, spread over groups g01..g25 (groups 1-7 -> test in fold 1)
    frames: int = 48  # frames per clip
    fps: int = 25  # frame rate written into the container (real UCF-101: 25)
    width: int = 64  # frame width (even: yuv420p); real UCF-101 is 320x240
    height: int = 48  # frame height (even)
    informative_frames: int = 4  # frames per label that show the label's pattern
    burst_frames: int = 4  # consecutive frames per appearance: sampling at >= fps/burst_frames sees every one
    labels_per_clip: tuple[int, int] = (2, 3)  # (min, max) labels per clip, including the folder's class
    clutter_objects: int = 3  # moving distractor objects per clip
    bit_rate: int = 600_000  # MPEG-4 bit rate, bits/s (high: keeps the stripes sharp at this tiny size)

    def __post_init__(self) -> None:
        lo, hi = self.labels_per_clip
        if not 1 <= self.num_classes <= len(UCF_CLASS_NAMES):
            raise ValueError(f"num_classes must be in 1..{len(UCF_CLASS_NAMES)}")
        if not 1 <= lo <= hi <= self.num_classes:
            raise ValueError("labels_per_clip must be (min, max) with 1 <= min <= max <= num_classes")
        if self.width % 2 or self.height % 2 or min(self.width, self.height) < 16:
            raise ValueError("width and height must be even and at least 16")
        if self.informative_frames % self.burst_frames or self.informative_frames <= 0:
            raise ValueError("informative_frames must be a positive multiple of burst_frames")
        if hi * (self.informative_frames // self.burst_frames) > self.frames // self.burst_frames:
            raise ValueError("frames must hold disjoint bursts of informative_frames for every label")
        if self.clips_per_class < 1:
            raise ValueError("clips_per_class must be at least 1")


def class_names(num_classes: int) -> list[str]:
    """The synthetic dataset's class folders; label ids are indices into ``sorted(class_names(n))``."""
    return sorted(UCF_CLASS_NAMES[:num_classes])


def clip_relpath(cls: str, group: int, clip: int) -> str:
    """``"<Class>/v_<Class>_gGG_cCC.avi"`` with the real HandstandPushups spelling quirk."""
    return f"{cls}/v_{FILE_NAME_SPELLING.get(cls, cls)}_g{group:02d}_c{clip:02d}.avi"


def _groups(clips_per_class: int) -> list[tuple[int, int]]:
    """(group, clip-in-group) for each clip of a class, spread evenly over the 25 groups."""
    out, count = [], {}
    for j in range(clips_per_class):
        g = 1 + (j * NUM_GROUPS) // clips_per_class if clips_per_class <= NUM_GROUPS else 1 + j % NUM_GROUPS
        count[g] = count.get(g, 0) + 1
        out.append((g, count[g]))
    return out


def class_pattern(label: int, num_classes: int, size: int) -> np.ndarray:
    """(size, size, 3) float in [0, 1]: stripes whose hue and orientation identify ``label``."""
    hue = label / num_classes
    angle = np.pi * ((label * 0.618034) % 1.0)  # golden-ratio spread: neighbours differ in hue and angle
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / 6.0)  # 6-px stripe period
    stripe = (np.sin(phase) > 0)[..., None]
    bright = np.array(colorsys.hsv_to_rgb(hue, 1.0, 1.0))
    dark = np.array(colorsys.hsv_to_rgb(hue, 1.0, 0.25))
    return np.where(stripe, bright, dark)


def _patches(rng: np.random.Generator, labels: list[int], cfg: VideoSynthConfig) -> dict[int, tuple[int, int, int]]:
    """{frame: (label, y0, x0)}: each label's pattern in disjoint, burst-aligned runs of frames.

    A burst keeps its place for its ``burst_frames`` frames; every burst gets a new random place.
    """
    slots = cfg.frames // cfg.burst_frames
    per_label = cfg.informative_frames // cfg.burst_frames
    chosen = rng.choice(slots, size=per_label * len(labels), replace=False)
    size = min(cfg.height, cfg.width) // 2
    out = {}
    for i, slot in enumerate(chosen):
        y0, x0 = int(rng.integers(0, cfg.height - size + 1)), int(rng.integers(0, cfg.width - size + 1))
        for t in range(int(slot) * cfg.burst_frames, (int(slot) + 1) * cfg.burst_frames):
            out[t] = (labels[i // per_label], y0, x0)
    return out


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w, 3) smooth low-contrast texture, periodic in x (whole wave cycles) so it can pan forever."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.full((h, w, 3), 0.45)
    for _ in range(3):
        cycles_x, cycles_y = rng.integers(1, 3), rng.uniform(0.5, 2.0)
        wave = np.sin(2 * np.pi * (cycles_x * xx / w + cycles_y * yy / h) + rng.uniform(0, 2 * np.pi))
        img += 0.08 * wave[..., None] * rng.uniform(0.3, 1.0, size=3)
    return img


def render_clip(rng: np.random.Generator, labels: list[int], cfg: VideoSynthConfig) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of one clip showing ``labels`` (sorted-folder ids) in a few bursts."""
    h, w, n = cfg.height, cfg.width, cfg.clutter_objects
    bg, pan = _background(rng, h, w), rng.uniform(-1.0, 1.0)  # pan: px/frame
    yy, xx = np.mgrid[0:h, 0:w]
    pos = rng.uniform([0, 0], [h, w], size=(n, 2))  # clutter centres (y, x)
    vel = rng.uniform(-2.0, 2.0, size=(n, 2))  # px/frame
    radius = rng.uniform(0.08, 0.2, size=n) * min(h, w)
    colour = [colorsys.hsv_to_rgb(rng.uniform(), 0.9, rng.uniform(0.5, 1.0)) for _ in range(n)]
    patches = _patches(rng, labels, cfg)
    size = min(h, w) // 2
    frames = np.empty((cfg.frames, h, w, 3), np.uint8)
    for t in range(cfg.frames):
        img = bg[:, (np.arange(w) + int(round(pan * t))) % w]  # (H, W, 3), a panned copy
        for (py, px), r, c in zip(pos, radius, colour):
            img[(yy - py) ** 2 + (xx - px) ** 2 <= r ** 2] = c
        if t in patches:
            label, y0, x0 = patches[t]
            img[y0:y0 + size, x0:x0 + size] = class_pattern(label, cfg.num_classes, size)
        img += rng.normal(0.0, 0.02, size=img.shape)
        frames[t] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
        pos += vel
        vel[(pos < 0) | (pos > [h, w])] *= -1  # bounce off the borders
    return frames


def write_avi(path: Path, frames: np.ndarray, fps: int, bit_rate: int) -> None:
    """Encode (T, H, W, 3) uint8 RGB frames as MPEG-4 Part 2 in AVI (decord seeks these correctly)."""
    import av  # heavy import kept out of module import time

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = bit_rate
        stream.codec_context.thread_count = 1  # single-threaded encoding: byte-identical output per seed
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())  # flush


def _write_lines(path: Path, lines: list[str]) -> None:
    """Write text with CRLF line endings, like the official split files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(f"{line}\r\n" for line in lines).encode())


def write_split_files(list_dir: Path, folders: list[str], clips: list[tuple[str, int, int]]) -> None:
    """``classInd.txt`` and ``{train,test}list0{1,2,3}.txt`` for ``clips`` = [(class, group, clip)]."""
    ind = {name: i + 1 for i, name in enumerate(sorted(folders, key=str.lower))}  # official 1-based order
    _write_lines(list_dir / "classInd.txt", [f"{i} {name}" for name, i in ind.items()])
    for fold, test_groups in TEST_GROUPS.items():
        train = [f"{clip_relpath(c, g, k)} {ind[c]}" for c, g, k in clips if g not in test_groups]
        test = [clip_relpath(c, g, k) for c, g, k in clips if g in test_groups]
        _write_lines(list_dir / f"trainlist0{fold}.txt", train)
        _write_lines(list_dir / f"testlist0{fold}.txt", test)


def _clip_labels(rng: np.random.Generator, primary: int, cfg: VideoSynthConfig) -> list[int]:
    """The primary (folder) label followed by distinct random extra labels."""
    lo, hi = cfg.labels_per_clip
    others = [c for c in range(cfg.num_classes) if c != primary]
    extra = rng.choice(others, size=int(rng.integers(lo, hi + 1)) - 1, replace=False)
    return [primary, *sorted(int(c) for c in extra)]


def generate_ucf_like(out_dir: Path, cfg: VideoSynthConfig, seed: int) -> dict[str, list[int]]:
    """Write the synthetic dataset under ``out_dir`` (``UCF-101/`` + ``ucfTrainTestlist/``).

    Deterministic for a given ``seed``: every clip draws from its own generator seeded by
    ``(seed, class, clip)``. Returns the label sets written to ``multilabels.json``.
    """
    out_dir = Path(out_dir)
    folders = class_names(cfg.num_classes)
    clips, multilabels = [], {}
    for ci, cls in progress(enumerate(folders), desc="synthetic clips", total=len(folders), unit="class"):
        for j, (group, k) in enumerate(_groups(cfg.clips_per_class)):
            rng = np.random.default_rng([seed, ci, j])
            labels = _clip_labels(rng, ci, cfg)
            rel = clip_relpath(cls, group, k)
            write_avi(out_dir / "UCF-101" / rel, render_clip(rng, labels, cfg), cfg.fps, cfg.bit_rate)
            clips.append((cls, group, k))
            multilabels[rel] = labels
    write_split_files(out_dir / "ucfTrainTestlist", folders, clips)
    write_json(out_dir / "UCF-101" / "multilabels.json", multilabels)
    return multilabels
