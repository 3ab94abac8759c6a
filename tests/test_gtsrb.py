"""The synthetic GTSRB mimic is in the real layout, and one parser prepares it (or the real data)."""
from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from attnrobust.data.gtsrb import CSV_HEADER, prepare_gtsrb
from attnrobust.data.synthetic.gtsrb import GtsrbSynthConfig, generate_gtsrb
from attnrobust.errors import UserError

SMALL = GtsrbSynthConfig(train_per_class=2, test_per_class=1, min_size=24, max_size=48)
SIZE = 32


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """torchvision-style root: the mimic lives in root/gtsrb. Treat as read-only."""
    root = tmp_path_factory.mktemp("gtsrb_root")
    generate_gtsrb(root / "gtsrb", SMALL, seed=0)
    return root


@pytest.fixture(scope="module")
def prepared(root: Path):
    return prepare_gtsrb(root / "gtsrb", SIZE)


@pytest.fixture
def raw_copy(root: Path, tmp_path: Path) -> Path:
    """A private copy of the mimic that a test may damage."""
    return Path(shutil.copytree(root / "gtsrb", tmp_path / "gtsrb"))


def _tree_bytes(top: Path) -> dict[str, bytes]:
    return {p.relative_to(top).as_posix(): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()}


def test_writes_all_43_class_folders_with_exact_header(root: Path) -> None:
    training = root / "gtsrb" / "GTSRB" / "Training"
    assert sorted(p.name for p in training.iterdir()) == [f"{c:05d}" for c in range(43)]
    header = ";".join(CSV_HEADER)
    assert header == "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"
    for c in (0, 42):
        lines = (training / f"{c:05d}" / f"GT-{c:05d}.csv").read_text().splitlines()
        assert lines[0] == header and len(lines) == 1 + SMALL.train_per_class
        assert lines[1].startswith("00000_00000.ppm;") and lines[1].endswith(f";{c}")
    test_csv = root / "gtsrb" / "GTSRB" / "Final_Test" / "Images" / "GT-final_test.test.csv"
    assert test_csv.read_text().splitlines()[0] == header.removesuffix(";ClassId")
    assert (root / "gtsrb" / "GT-final_test.csv").read_text().splitlines()[0] == header
    assert (training / "00007" / "00000_00001.ppm").read_bytes()[:2] == b"P6"


def test_border_is_at_least_ten_percent_and_five_pixels(root: Path) -> None:
    with open(root / "gtsrb" / "GT-final_test.csv", newline="") as f:
        for row in csv.DictReader(f, delimiter=";"):
            w, h, x1, y1, x2, y2 = (int(row[k]) for k in CSV_HEADER[1:7])
            for before, after, side in ((x1, w - x2, x2 - x1), (y1, h - y2, y2 - y1)):
                assert min(before, after) >= max(5, math.ceil(0.1 * side))
            assert SMALL.min_size <= min(w, h) and max(w, h) <= SMALL.max_size


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    cfg = GtsrbSynthConfig(train_per_class=1, test_per_class=1, min_size=24, max_size=32)
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        generate_gtsrb(tmp_path / name, cfg, seed=seed)
    a, b, c = (_tree_bytes(tmp_path / n) for n in "abc")
    assert a == b
    assert a.keys() == c.keys()
    assert sum(a[k] != c[k] for k in a if k.endswith(".ppm")) == len([k for k in a if k.endswith(".ppm")])


def test_torchvision_loads_both_splits_with_folder_labels(root: Path) -> None:
    torchvision = pytest.importorskip("torchvision")
    train = torchvision.datasets.GTSRB(root=root, split="train")
    assert len(train) == 43 * SMALL.train_per_class
    assert all(label == int(Path(path).parent.name) for path, label in train._samples)
    image, label = train[5]
    assert image.mode == "RGB" and label == 2
    test = torchvision.datasets.GTSRB(root=root, split="test")
    assert len(test) == 43 * SMALL.test_per_class
    assert sorted(label for _, label in test._samples) == list(range(43))


def test_prepared_splits_match_the_csvs(root: Path, prepared) -> None:
    splits, classes, skipped = prepared
    assert classes == [f"{c:05d}" for c in range(43)] and skipped == []
    train, test = splits["train"], splits["test"]
    assert train.images.shape == (43 * SMALL.train_per_class, 3, SIZE, SIZE) and train.images.dtype == np.uint8
    assert train.ids[:2] == ["GTSRB/Training/00000/00000_00000.ppm", "GTSRB/Training/00000/00000_00001.ppm"]
    assert all(label == int(i.split("/")[2]) for label, i in zip(train.labels, train.ids))
    with open(root / "gtsrb" / "GT-final_test.csv", newline="") as f:
        truth = {r["Filename"]: int(r["ClassId"]) for r in csv.DictReader(f, delimiter=";")}
    assert test.ids == sorted(test.ids)
    assert [truth[i.rsplit("/", 1)[1]] for i in test.ids] == test.labels.tolist()


def test_mask_is_exactly_the_resized_roi(root: Path, prepared) -> None:
    splits, _, _ = prepared
    with open(root / "gtsrb" / "GT-final_test.csv", newline="") as f:
        rows = {r["Filename"]: r for r in csv.DictReader(f, delimiter=";")}
    test = splits["test"]
    for k in (0, 17, 42):
        w, h, x1, y1, x2, y2 = (int(rows[test.ids[k].rsplit("/", 1)[1]][c]) for c in CSV_HEADER[1:7])
        # nearest-neighbour resize: output pixel j samples source pixel floor((j + 0.5) * side / SIZE)
        src_x = np.floor((np.arange(SIZE) + 0.5) * w / SIZE)
        src_y = np.floor((np.arange(SIZE) + 0.5) * h / SIZE)
        expected = ((src_y >= y1) & (src_y < y2))[:, None] & ((src_x >= x1) & (src_x < x2))[None, :]
        np.testing.assert_array_equal(test.masks[k], expected.astype(np.uint8))
        assert test.masks[k][0, 0] == 0 and test.masks[k][SIZE // 2, SIZE // 2] == 1


def test_truncated_ppm_is_skipped_and_reported(raw_copy: Path) -> None:
    bad = raw_copy / "GTSRB" / "Training" / "00003" / "00000_00001.ppm"
    bad.write_bytes(bad.read_bytes()[:40])
    splits, _, skipped = prepare_gtsrb(raw_copy, SIZE)
    assert len(skipped) == 1 and skipped[0].startswith("GTSRB/Training/00003/00000_00001.ppm: ")
    assert len(splits["train"].labels) == 43 * SMALL.train_per_class - 1
    assert "GTSRB/Training/00003/00000_00001.ppm" not in splits["train"].ids
    assert len(splits["test"].labels) == 43 * SMALL.test_per_class


def test_empty_class_folder_is_a_user_error_naming_it(raw_copy: Path) -> None:
    folder = raw_copy / "GTSRB" / "Training" / "00005"
    for p in folder.iterdir():
        p.unlink()
    with pytest.raises(UserError, match=r"00005.*no \.ppm images"):
        prepare_gtsrb(raw_copy, SIZE)


def test_listed_but_missing_images_are_skipped_by_name_and_missing_folders_are_user_errors(raw_copy: Path) -> None:
    (raw_copy / "GTSRB" / "Training" / "00001" / "00000_00000.ppm").unlink()
    first = sorted((raw_copy / "GTSRB" / "Final_Test" / "Images").glob("*.ppm"))[0]
    first.unlink()
    splits, _, skipped = prepare_gtsrb(raw_copy, SIZE)
    assert skipped == ["GTSRB/Training/00001/00000_00000.ppm: listed in GT-00001.csv but missing on disk",
                       f"GTSRB/Final_Test/Images/{first.name}: listed in GT-final_test.csv but missing on disk"]
    assert "GTSRB/Training/00001/00000_00000.ppm" not in splits["train"].ids
    shutil.rmtree(raw_copy / "GTSRB" / "Training")
    with pytest.raises(UserError, match=r"Training: not found; extract GTSRB-Training_fixed\.zip"):
        prepare_gtsrb(raw_copy, SIZE)


def test_missing_test_ground_truth_is_a_user_error(raw_copy: Path) -> None:
    (raw_copy / "GT-final_test.csv").unlink()
    with pytest.raises(UserError, match=r"GT-final_test\.csv: not found; extract GTSRB_Final_Test_GT\.zip"):
        prepare_gtsrb(raw_copy, SIZE)


def test_folder_without_csv_falls_back_to_folder_index(raw_copy: Path) -> None:
    (raw_copy / "GTSRB" / "Training" / "00009" / "GT-00009.csv").unlink()
    with pytest.warns(UserWarning, match="00009"):
        splits, _, _ = prepare_gtsrb(raw_copy, SIZE)
    train = splits["train"]
    picked = [k for k, i in enumerate(train.ids) if "/00009/" in i]
    assert len(picked) == SMALL.train_per_class and set(train.labels[picked]) == {9}
    assert all(train.masks[k][0, 0] == 0 and train.masks[k][SIZE // 2, SIZE // 2] == 1 for k in picked)


@pytest.mark.parametrize("kwargs", [dict(train_per_class=0), dict(test_per_class=0),
                                    dict(min_size=10), dict(min_size=50, max_size=40), dict(max_size=300)])
def test_config_rejects_out_of_range_values(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        GtsrbSynthConfig(**kwargs)
