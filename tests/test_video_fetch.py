"""fetch@video and features for YouTube-8M records: copy, convert, and clear errors."""
import numpy as np
import pytest

from attnrobust.errors import UserError
from attnrobust.tasks import VIDEO
from attnrobust.video.features import FeaturesConfig, dequantize
from attnrobust.video.fetch import YT8M_CLASSES, VideoDataConfig, build_features, fetch_video
from attnrobust.video.yt8m import FrameRecord, write_frame_records


def _records(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "yt8m"
    for split, n in (("train", 3), ("validate", 2)):
        videos = [FrameRecord(f"{split[0]}{i:03d}", sorted(rng.choice(YT8M_CLASSES, 2, replace=False).tolist()),
                              rng.integers(0, 256, (5 + i, 1024), dtype=np.uint8),
                              rng.integers(0, 256, (5 + i, 128), dtype=np.uint8)) for i in range(n)]
        write_frame_records(src / f"{split}0000.tfrecord", videos)
    return src


def test_yt8m_records_are_copied_converted_and_loaded_as_the_video_task(tmp_path):
    src = _records(tmp_path)
    cfg = VideoDataConfig(source="yt8m", yt8m_dir=str(src))
    fetch_video(tmp_path / "raw", source="real", cfg=cfg, seed=0)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["train0000.tfrecord", "validate0000.tfrecord"]
    build_features(tmp_path / "raw", tmp_path / "prepared", FeaturesConfig(max_frames=8, shard_size=2), seed=0)
    test = VIDEO.load(tmp_path / "prepared", "test")  # validate -> test
    assert test.x.shape == (2, 8, 1152 + 1) and test.y.shape == (2, YT8M_CLASSES)
    assert test.mask[0].tolist() == [1.0] * 5 + [0.0] * 3  # the flag marks real frames
    assert float(test.x[0, 5:, :].abs().max()) == 0.0  # padded frames are all zero
    assert float(test.x[0, :5, :-1].min()) >= float(dequantize(np.uint8(0)))


def test_yt8m_without_records_names_the_key_and_the_fix(tmp_path):
    with pytest.raises(UserError, match="data.video.yt8m_dir.*download.py"):
        fetch_video(tmp_path / "raw", source="real", cfg=VideoDataConfig(source="yt8m", yt8m_dir=str(tmp_path)),
                    seed=0)
    with pytest.raises(UserError, match="no synthetic version"):
        fetch_video(tmp_path / "raw", source="synthetic", cfg=VideoDataConfig(source="yt8m"), seed=0)
    assert not (tmp_path / "raw").exists()
