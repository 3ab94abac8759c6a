"""Video data path: synthetic UCF-101 clips -> decord -> features -> shards; YouTube-8M TFRecords."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch  # noqa: F401  (import torch before decord: the other order segfaults with CUDA)

from attnrobust.errors import UserError
from attnrobust.video import synthetic
from attnrobust.video.decode import list_clips, list_kinetics, read_frames, sample_indices
from attnrobust.video.feature_store import QUANT_STEP
from attnrobust.video.features import (
    FeaturesConfig,
    dequantize,
    extract_features,
    quantize,
    read_feature_split,
)
from attnrobust.video.synthetic import VideoSynthConfig, generate_ucf_like
from attnrobust.video.yt8m import FrameRecord, convert_yt8m, read_frame_records, write_frame_records

SYNTH = VideoSynthConfig(num_classes=4, clips_per_class=4, frames=16, width=32, height=24,
                         informative_frames=4, burst_frames=4, labels_per_clip=(1, 2), clutter_objects=2)
FEATS = FeaturesConfig(fps=6.25, max_frames=3, dim=8, image_size=24, batch_size=16, shard_size=5)


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("video") / "raw"
    generate_ucf_like(out, SYNTH, seed=0)
    return out


@pytest.fixture(scope="module")
def features_dir(raw_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("features") / "video"
    extract_features(raw_dir, out, FEATS, seed=0)
    return out


# ---------------------------------------------------------------- synthetic clips + decoding

def test_synthetic_clips_decode_with_decord(raw_dir):
    import decord

    _, clips = list_clips(raw_dir)
    reader = decord.VideoReader(str(clips[0].path), ctx=decord.cpu(0))
    assert len(reader) == SYNTH.frames
    assert reader.get_avg_fps() == pytest.approx(SYNTH.fps)
    assert reader[0].shape == (SYNTH.height, SYNTH.width, 3)
    sparse = [1, 6, 7, 13]  # sparse get_batch is only reliable for MPEG-4 Part 2 in AVI
    batch = reader.get_batch(sparse).asnumpy()
    np.testing.assert_array_equal(batch, np.stack([reader[i].asnumpy() for i in sparse]))


def test_synthetic_generation_is_deterministic(raw_dir, tmp_path):
    again = tmp_path / "raw"
    generate_ucf_like(again, SYNTH, seed=0)
    files = sorted(p.relative_to(raw_dir) for p in raw_dir.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((raw_dir / f).read_bytes() == (again / f).read_bytes() for f in files)


def test_each_label_shows_in_few_burst_aligned_frames():
    cfg = VideoSynthConfig()
    rng = np.random.default_rng(0)
    patches = synthetic._patches(rng, [2, 5, 7], cfg)
    shown = [label for label, _, _ in patches.values()]
    assert sorted(shown) == sorted([2, 5, 7] * cfg.informative_frames)
    assert len(patches) < cfg.frames / 2  # most frames are distractors
    sampled = range(0, cfg.frames, cfg.burst_frames)  # sampling at fps / burst_frames
    assert {patches[t][0] for t in sampled if t in patches} == {2, 5, 7}


def test_split_files_parse_and_labels_come_from_folders(raw_dir):
    classes, clips = list_clips(raw_dir, fold=1)
    assert classes == sorted(synthetic.UCF_CLASS_NAMES[:SYNTH.num_classes])
    assert "HandstandPushups" in classes
    handstand = [c for c in clips if c.clip_id.startswith("HandstandPushups/")]
    assert handstand and all("v_HandStandPushups_g" in c.clip_id for c in handstand)
    assert all(c.labels[0] == classes.index("HandstandPushups") for c in handstand)
    assert all(not c.clip_id.endswith("\r") and c.path.is_file() for c in clips)  # CRLF stripped
    for c in clips:  # groups 1-7 are fold 1's test set
        assert (c.split == "test") == (int(c.clip_id.split("_g")[1][:2]) <= 7)
    multilabels = json.loads((raw_dir / "UCF-101" / "multilabels.json").read_text())
    assert {c.clip_id: sorted(c.labels) for c in clips} == {k: sorted(v) for k, v in multilabels.items()}
    # classInd.txt (1-based, case-insensitive order) disagrees with the sorted folders: never used for labels
    class_ind = [line.split()[1] for line in (raw_dir / "ucfTrainTestlist" / "classInd.txt").read_text().splitlines()]
    assert class_ind.index("HammerThrow") != classes.index("HammerThrow")


def test_torchvision_ucf101_agrees_on_splits_and_labels(raw_dir):
    """torchvision's own parser (fold files + sorted folders) picks the same clips and primary labels."""
    from torchvision.datasets import UCF101
    from torchvision.datasets.folder import find_classes, make_dataset

    clip_root = raw_dir / "UCF-101"
    paths = [p for p, _ in make_dataset(str(clip_root), find_classes(str(clip_root))[1], extensions=("avi",))]
    metadata = {"video_paths": paths, "video_pts": [torch.arange(SYNTH.frames)] * len(paths),
                "video_fps": [float(SYNTH.fps)] * len(paths)}  # skips decoding (needs torchcodec)
    _, clips = list_clips(raw_dir, fold=1)
    for split in ("train", "test"):
        ds = UCF101(str(clip_root), str(raw_dir / "ucfTrainTestlist"), frames_per_clip=4, fold=1,
                    train=split == "train", _precomputed_metadata=metadata)
        theirs = {Path(ds.samples[i][0]).relative_to(clip_root).as_posix(): ds.samples[i][1] for i in ds.indices}
        assert theirs == {c.clip_id: c.labels[0] for c in clips if c.split == split}


def test_kinetics_layout_lists_splits_and_labels(tmp_path):
    for rel in ["train/abseiling/aaa_000010_000020.mp4", "train/zumba/bbb_000000_000010.mp4",
                "val/zumba/ccc_000005_000015.mp4", "val/zumba/notes.txt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    classes, clips = list_kinetics(tmp_path)
    assert classes == ["abseiling", "zumba"]
    assert [(c.split, c.clip_id, c.labels) for c in clips] == [
        ("train", "abseiling/aaa_000010_000020.mp4", (0,)), ("train", "zumba/bbb_000000_000010.mp4", (1,)),
        ("val", "zumba/ccc_000005_000015.mp4", (1,))]


def test_sample_indices_follow_requested_fps():
    np.testing.assert_array_equal(sample_indices(16, 25.0, 6.25), [0, 4, 8, 12])
    np.testing.assert_array_equal(sample_indices(250, 25.0, 1.0, max_frames=3), [0, 25, 50])
    np.testing.assert_array_equal(sample_indices(5, 25.0, 100.0), [0, 1, 2, 3, 4])  # never upsamples


def test_read_frames_samples_at_fps(raw_dir):
    _, clips = list_clips(raw_dir)
    frames = read_frames(clips[0].path, fps=6.25)
    assert frames.shape == (4, SYNTH.height, SYNTH.width, 3) and frames.dtype == np.uint8


# ---------------------------------------------------------------- features

def test_feature_shards_have_the_documented_format(features_dir, raw_dir):
    meta = json.loads((features_dir / "meta.json").read_text())
    classes, clips = list_clips(raw_dir)
    assert meta["classes"] == classes and meta["dim"] == FEATS.dim and meta["skipped"] == []
    train = read_feature_split(features_dir, "train")
    assert train.rgb.shape == (meta["splits"]["train"], FEATS.max_frames, FEATS.dim)
    assert train.rgb.dtype == np.uint8 and train.labels.dtype == np.uint8
    assert len(list(features_dir.glob("train-*.npz"))) == -(-meta["splits"]["train"] // FEATS.shard_size)
    by_id = {c.clip_id: c for c in clips}
    for i, clip_id in enumerate(train.ids):
        assert set(np.flatnonzero(train.labels[i])) == set(by_id[clip_id].labels)
        assert not train.rgb[i, train.num_frames[i]:].any()  # zero padding after the real frames


def test_features_are_deterministic(features_dir, raw_dir, tmp_path):
    extract_features(raw_dir, tmp_path / "again", FEATS, seed=0)
    for name in ["meta.json", "pca.npz", *(p.name for p in features_dir.glob("*-*.npz"))]:
        assert (tmp_path / "again" / name).read_bytes() == (features_dir / name).read_bytes(), name


def test_corrupt_clip_is_skipped_and_reported(raw_dir, tmp_path, caplog):
    copy = tmp_path / "raw"
    shutil.copytree(raw_dir, copy)
    _, clips = list_clips(copy)
    victim = next(c for c in clips if c.split == "train")
    victim.path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with caplog.at_level(logging.WARNING):
        summary = extract_features(copy, tmp_path / "out", FEATS, seed=0)
    assert summary["skipped"] == [victim.clip_id]
    assert sum(summary["splits"].values()) == len(clips) - 1
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["skipped"] == [victim.clip_id]
    assert "skipped 1 unreadable clip(s)" in caplog.text and victim.clip_id in caplog.text
    assert victim.clip_id not in read_feature_split(tmp_path / "out", "train").ids


def test_quantize_round_trip_error_is_within_one_level():
    x = np.linspace(-2.0, 2.0, 100_001)
    error = np.abs(dequantize(quantize(x)) - x)
    assert error.max() <= 0.0157  # half a level of rounding + the half-level dequantisation bias
    levels = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(quantize(dequantize(levels)), levels)
    assert quantize(np.array([-5.0, 5.0])).tolist() == [0, 255]  # clipped to [-2, 2]
    t = torch.linspace(-2.0, 2.0, 1001)
    np.testing.assert_array_equal(quantize(t).numpy(), quantize(t.numpy()))
    assert QUANT_STEP == pytest.approx(4 / 255)


# ---------------------------------------------------------------- YouTube-8M TFRecords

def _videos(rng: np.random.Generator) -> list[FrameRecord]:
    lengths, label_sets = [3, 0, 7, 1], [[1, 4], [], [0], [2, 3, 4]]
    return [FrameRecord(f"v{i:03d}", labels, rng.integers(0, 256, (t, 1024), dtype=np.uint8),
                        rng.integers(0, 256, (t, 128), dtype=np.uint8))
            for i, (t, labels) in enumerate(zip(lengths, label_sets))]


def test_tfrecord_round_trip_is_exact(tmp_path):
    videos = _videos(np.random.default_rng(0))
    assert write_frame_records(tmp_path / "train0000.tfrecord", videos, index=True) == len(videos)
    assert len((tmp_path / "train0000.tfindex").read_text().splitlines()) == len(videos)
    back = list(read_frame_records(tmp_path / "train0000.tfrecord", max_frames=5))
    assert [(v.id, v.labels) for v in back] == [(v.id, v.labels) for v in videos]
    for original, read in zip(videos, back):
        np.testing.assert_array_equal(read.rgb, original.rgb[:5])
        np.testing.assert_array_equal(read.audio, original.audio[:5])


def test_truncated_tfrecord_is_a_user_error(tmp_path):
    path = tmp_path / "train0000.tfrecord"
    write_frame_records(path, _videos(np.random.default_rng(0)))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UserError, match="truncated"):
        list(read_frame_records(path))


def test_convert_yt8m_writes_the_shared_shard_format(tmp_path):
    rng = np.random.default_rng(0)
    write_frame_records(tmp_path / "rec" / "train0000.tfrecord", _videos(rng))
    write_frame_records(tmp_path / "rec" / "validate0000.tfrecord", _videos(rng)[:2])
    convert_yt8m(tmp_path / "rec", tmp_path / "out", num_classes=5, max_frames=4, shard_size=3)
    train = read_feature_split(tmp_path / "out", "train")
    videos = _videos(np.random.default_rng(0))
    assert train.rgb.shape == (4, 4, 1152) and train.ids == [v.id for v in videos]
    np.testing.assert_array_equal(train.rgb[2, :4, :1024], videos[2].rgb[:4])
    np.testing.assert_array_equal(train.rgb[2, :4, 1024:], videos[2].audio[:4])
    assert train.num_frames.tolist() == [3, 0, 4, 1]
    assert [set(np.flatnonzero(row)) for row in train.labels] == [set(v.labels) for v in videos]
    assert len(read_feature_split(tmp_path / "out", "test").ids) == 2  # validate* -> test
