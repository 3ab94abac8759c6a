"""Frame features from raw clips, in the YouTube-8M format (reading them back:
:mod:`attnrobust.video.feature_store`, which training and attacks use without this module).

Pipeline per clip: decord frames at ``fps`` (first ``max_frames``) -> frozen torchvision backbone
(global-pooled features) -> PCA fitted on the *train* split's frames, whitened like YouTube-8M
(``(x - mean) @ eigvecs / sqrt(eigval + 1e-4)``) -> clip to [-2, 2] -> 8-bit quantisation.

Layout of a features directory (also written by :func:`attnrobust.video.yt8m.convert_yt8m`)::

    meta.json              {"source", "classes", "num_classes", "dim", "max_frames",
                            "splits": {split: n}, "skipped": [clip ids], ...}
    <split>-000.npz ...    rgb uint8 (N, max_frames, dim) zero-padded, num_frames int64 (N,),
                           labels uint8 (N, C) multi-hot, ids str (N,)
    pca.npz                mean (F,), components (dim, F), eigenvalues (dim,)   (raw clips only)

Shards are written byte-for-byte deterministically (fixed zip timestamps), so re-running the
stage with the same inputs gives the same files. Load with ``allow_pickle=False``.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from attnrobust.config import as_dict
from attnrobust.errors import UserError
from attnrobust.io import read_json, save_npz, write_json
from attnrobust.runtime import show_progress
from attnrobust.video.decode import Clip, UnreadableVideoError, list_clips, read_frames
from attnrobust.video.feature_store import FeatureSplit, dequantize, quantize, read_feature_split  # noqa: F401

log = logging.getLogger(__name__)

PCA_EPS = 1e-4  # YouTube-8M whitening: / sqrt(eigval + 1e-4)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FeaturesConfig:
    """Frame-feature extraction from raw clips. Frame rates in frames/s, sizes in pixels."""

    fps: float = 6.25  # frames sampled per second of video (YouTube-8M: 1); 25/6.25 = every 4th frame
    max_frames: int = 12  # sampled frames kept per clip (YT8M: 300); longer clips truncated, shorter zero-padded
    backbone: str = "resnet18"  # torchvision classification model, used up to its global pooling
    weights: Literal["none", "imagenet"] = "none"  # none: seeded random init (offline); imagenet: downloads
    dim: int = 128  # PCA dimensions kept (YT8M rgb: 1024); at most the backbone's width and the train frames
    image_size: int = 48  # frames resized so the short side has this many pixels (aspect kept)
    batch_size: int = 64  # frames per backbone forward pass (consecutive clips share a batch)
    shard_size: int = 256  # clips per .npz shard
    fold: int = 1  # UCF-101 split (1, 2 or 3); ignored for the Kinetics layout

    def __post_init__(self) -> None:
        if self.fps <= 0 or self.max_frames < 1 or self.dim < 1 or self.image_size < 16:
            raise ValueError("fps, max_frames and dim must be positive, image_size at least 16")
        if self.batch_size < 1 or self.shard_size < 1 or self.fold not in (1, 2, 3):
            raise ValueError("batch_size and shard_size must be positive, fold 1, 2 or 3")


# ---------------------------------------------------------------------------- backbone

def _load_model(cfg: FeaturesConfig) -> nn.Module:
    """The torchvision classifier named by ``cfg.backbone``, random or ImageNet-initialised."""
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(cfg.backbone).DEFAULT if cfg.weights == "imagenet" else None
        return torchvision.models.get_model(cfg.backbone, weights=weights)
    except ValueError as exc:
        names = ", ".join(torchvision.models.list_models(torchvision.models)[:12])
        raise UserError(f"features.backbone: unknown torchvision model {cfg.backbone!r} (e.g. {names}, ...)") from exc
    except OSError as exc:  # URLError included: no network for the weight download
        raise UserError(f"features.weights: cannot download ImageNet weights for {cfg.backbone!r} ({exc}); "
                        "check the network or set features.weights: none") from exc


def build_backbone(cfg: FeaturesConfig) -> nn.Module:
    """A frozen torchvision classifier with its head replaced by the identity (global-pooled output).

    Random initialisation draws from torch's global generator: seed it first.
    """
    model = _load_model(cfg)
    for head in ("fc", "classifier", "heads", "head"):  # resnet/inception, mobilenet/efficientnet, vit, swin
        if isinstance(getattr(model, head, None), nn.Module):
            setattr(model, head, nn.Identity())
            break
    else:
        raise UserError(f"features.backbone: don't know how to remove the head of {cfg.backbone!r}")
    return model.eval().requires_grad_(False)


def preprocess(frames: np.ndarray, cfg: FeaturesConfig) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, h, w) float, short side ``image_size``, ImageNet-normalised."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)  # (T, 3, H, W)
    short = min(x.shape[-2:])
    if short != cfg.image_size:
        size = [round(s * cfg.image_size / short) for s in x.shape[-2:]]
        x = nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


@torch.inference_mode()
def embed(backbone: nn.Module, x: torch.Tensor, batch_size: int) -> np.ndarray:
    """Pooled backbone features of preprocessed frames (T, 3, h, w): (T, F) float32."""
    return torch.cat([backbone(chunk).flatten(1) for chunk in x.split(batch_size)]).numpy().astype(np.float32)


def embed_frames(backbone: nn.Module, frames: np.ndarray, cfg: FeaturesConfig) -> np.ndarray:
    """Pooled backbone features of (T, H, W, 3) uint8 frames: (T, F) float32."""
    return embed(backbone, preprocess(frames, cfg), cfg.batch_size)


@contextlib.contextmanager
def deterministic_torch(seed: int) -> Iterator[None]:
    """Seeded, deterministic-algorithm torch inside the block; the caller's RNG and flags are restored."""
    was_on = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(was_on, warn_only=was_warn)


def _progress(items: Sequence, desc: str) -> Iterable:
    """tqdm only when a human watches (stderr is a terminal); DVC logs stay clean."""
    if not show_progress():
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="clip")


def embed_clips(backbone: nn.Module, clips: Sequence[Clip], cfg: FeaturesConfig
                ) -> tuple[dict[str, np.ndarray], list[str]]:
    """({clip id: (T, F) float32 features}, [ids of clips decord could not read]).

    Frames of consecutive clips share forward passes of ``batch_size`` frames (small
    per-clip batches are ~2x slower on CPU). On CPU a frame's features came out bit-identical
    whatever batch it was in, so skipping a corrupt clip does not change its neighbours.
    """
    pooled, skipped, pending = {}, [], []  # pending: [(clip id, preprocessed frames)]

    def flush() -> None:
        feats = embed(backbone, torch.cat([x for _, x in pending]), cfg.batch_size)
        for (clip_id, x), part in zip(pending, np.split(feats, np.cumsum([len(x) for _, x in pending])[:-1])):
            pooled[clip_id] = part
        pending.clear()

    for clip in _progress(clips, "features"):
        try:
            x = preprocess(read_frames(clip.path, cfg.fps, cfg.max_frames), cfg)
        except UnreadableVideoError as exc:
            log.warning("%s", exc)
            skipped.append(clip.clip_id)
            continue
        if pending and pending[0][1].shape[1:] != x.shape[1:]:
            flush()  # frames of another size cannot share a batch
        pending.append((clip.clip_id, x))
        if sum(len(p) for _, p in pending) >= cfg.batch_size:
            flush()
    if pending:
        flush()
    if skipped:
        log.warning("skipped %d unreadable clip(s): %s", len(skipped), ", ".join(skipped))
    return pooled, skipped


# ---------------------------------------------------------------------------- PCA

@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    """Small float64 linear algebra runs fastest on one thread; many threads idling in torch's
    OpenMP pool right after the backbone made a 512x512 ``eigh`` take seconds on 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class Pca:
    """A fitted YouTube-8M-style PCA: ``(x - mean) @ components.T / sqrt(eigenvalues + 1e-4)``."""

    mean: np.ndarray  # (F,) float64
    components: np.ndarray  # (dim, F) float64, rows = eigenvectors, largest eigenvalue first
    eigenvalues: np.ndarray  # (dim,) float64

    def whiten(self, x: np.ndarray) -> np.ndarray:
        """(T, F) raw features -> (T, dim) whitened float32."""
        with _single_thread():
            z = (torch.from_numpy(x).double() - torch.from_numpy(self.mean)) @ torch.from_numpy(self.components).T
            z = z / torch.from_numpy(np.sqrt(self.eigenvalues + PCA_EPS))
        return z.float().numpy()


def fit_pca(x: np.ndarray, dim: int) -> Pca:
    """PCA of (N, F) features keeping ``dim`` components; each component's sign is fixed
    (largest-magnitude entry positive) so results do not depend on the LAPACK build.

    Linear algebra runs in torch (float64, one thread), not numpy: numpy's OpenBLAS threads
    and torch's OpenMP threads fight over the cores when both are used in one process.
    """
    n, width = x.shape
    if dim > width or dim > n:
        raise UserError(f"features.dim={dim} exceeds the backbone width ({width}) or the number of "
                        f"train frames ({n}); lower features.dim")
    with _single_thread():
        data = torch.from_numpy(x).double()
        mean = data.mean(dim=0)
        centred = data - mean
        values, vectors = torch.linalg.eigh(centred.T @ centred / max(n - 1, 1))  # ascending
    values, vectors = values.numpy()[::-1][:dim], vectors.numpy()[:, ::-1][:, :dim]
    components = np.ascontiguousarray(vectors.T)  # (dim, F)
    signs = np.sign(components[np.arange(dim), np.abs(components).argmax(axis=1)])
    return Pca(mean.numpy(), components * signs[:, None], np.clip(values, 0.0, None).copy())


# ---------------------------------------------------------------------------- shard IO

@dataclass(frozen=True)
class FeatureItem:
    """One clip/video ready for a shard."""

    clip_id: str
    split: str
    features: np.ndarray  # (T, dim) uint8 quantised, T <= max_frames
    labels: Sequence[int]  # class ids


def empty_dir(path: Path) -> Path:
    """Create ``path`` if needed and insist it is empty: stale shards would be read as data."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if any(path.iterdir()):
        raise UserError(f"{path}: output directory is not empty; remove it first (DVC stages get a fresh one)")
    return path


class ShardWriter:
    """Buffers items per split and writes ``<split>-NNN.npz`` every ``shard_size`` items."""

    def __init__(self, out_dir: Path, *, num_classes: int, dim: int, max_frames: int, shard_size: int):
        self.out_dir, self.num_classes, self.dim = Path(out_dir), num_classes, dim
        self.max_frames, self.shard_size = max_frames, shard_size
        self.buffers: dict[str, list[FeatureItem]] = {}
        self.counts: dict[str, int] = {}
        self.shards: dict[str, int] = {}

    def add(self, item: FeatureItem) -> None:
        if item.features.ndim != 2 or item.features.shape[1] != self.dim or item.features.dtype != np.uint8:
            raise ValueError(f"{item.clip_id}: features must be uint8 (T, {self.dim}), got "
                             f"{item.features.dtype} {item.features.shape}")
        if any(not 0 <= c < self.num_classes for c in item.labels):
            raise UserError(f"{item.clip_id}: label outside 0..{self.num_classes - 1}: {list(item.labels)}")
        self.buffers.setdefault(item.split, []).append(item)
        self.counts[item.split] = self.counts.get(item.split, 0) + 1
        if len(self.buffers[item.split]) == self.shard_size:
            self._flush(item.split)

    def _flush(self, split: str) -> None:
        items = self.buffers.pop(split, [])
        n = len(items)
        rgb = np.zeros((n, self.max_frames, self.dim), np.uint8)  # zero-padded in time
        labels = np.zeros((n, self.num_classes), np.uint8)
        num_frames = np.zeros(n, np.int64)
        for i, item in enumerate(items):
            t = min(len(item.features), self.max_frames)
            rgb[i, :t], num_frames[i] = item.features[:t], t
            labels[i, list(item.labels)] = 1
        k = self.shards.get(split, 0)
        save_npz(self.out_dir / f"{split}-{k:03d}.npz", rgb=rgb, num_frames=num_frames, labels=labels,
                 ids=np.asarray([item.clip_id for item in items], dtype=str))
        self.shards[split] = k + 1

    def close(self, splits: Sequence[str] = ()) -> dict[str, int]:
        """Write the partly filled shards (and an empty shard for each listed split with no items)."""
        for split in list(self.buffers):
            self._flush(split)
        for split in splits:
            if split not in self.shards:
                self.counts[split] = 0
                self._flush(split)
        return dict(self.counts)


# ---------------------------------------------------------------------------- the stage's core

def extract_features(raw_dir: Path, out_dir: Path, cfg: FeaturesConfig, seed: int) -> dict:
    """Extract quantised frame features of every clip under ``raw_dir`` into ``out_dir``.

    Unreadable clips are skipped, logged and listed in ``meta.json``. Deterministic on CPU for
    a fixed ``seed``. Returns a summary: split sizes, skipped ids, frames and frames/s.
    """
    start = time.perf_counter()
    out_dir = empty_dir(out_dir)
    classes, clips = list_clips(raw_dir, cfg.fold)
    with deterministic_torch(seed):
        pooled, skipped = embed_clips(build_backbone(cfg), clips, cfg)
    kept = [c for c in clips if c.clip_id in pooled]
    train = [pooled[c.clip_id] for c in kept if c.split == "train"]
    if not train:
        raise UserError(f"{raw_dir}: no readable train clips to fit the PCA on")
    pca = fit_pca(np.concatenate(train), cfg.dim)
    save_npz(out_dir / "pca.npz", mean=pca.mean, components=pca.components, eigenvalues=pca.eigenvalues)
    writer = ShardWriter(out_dir, num_classes=len(classes), dim=cfg.dim, max_frames=cfg.max_frames,
                         shard_size=cfg.shard_size)
    for clip in kept:
        writer.add(FeatureItem(clip.clip_id, clip.split, quantize(pca.whiten(pooled[clip.clip_id])), clip.labels))
    counts = writer.close(sorted({c.split for c in clips}))
    write_json(out_dir / "meta.json", {
        "source": "video", "classes": classes, "num_classes": len(classes), "dim": cfg.dim,
        "max_frames": cfg.max_frames, "splits": counts, "skipped": skipped, "config": as_dict(cfg), "seed": seed,
    })
    frames = int(sum(len(v) for v in pooled.values()))
    seconds = time.perf_counter() - start
    return {"splits": counts, "skipped": skipped, "frames": frames, "seconds": seconds,
            "frames_per_s": frames / max(seconds, 1e-9)}
