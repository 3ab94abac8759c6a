"""The parsers and masks on the real GTSRB and COCO files beside the checkout (``../shared/data``).

Skipped, with the reason, where that folder is absent (a clone elsewhere). The files are read,
never written: every test works on the shared copy in place, as ``data.<dataset>.local_dir``
does, except the one that deletes a file, which works on a copy of a few of them.
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from attnrobust.data.coco import dominant_category, load_coco, prepare_coco
from attnrobust.data.gtsrb import load_sample, prepare_gtsrb
from attnrobust.masks.coco_masks import decode_annotation, instance_masks

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
GTSRB, COCO_DIR = SHARED / "gtsrb", SHARED / "coco-mini"
pytestmark = pytest.mark.skipif(not (GTSRB.is_dir() and COCO_DIR.is_dir()),
                                reason=f"no real data at {SHARED} (only beside the project's own checkout)")
SIZE = 32


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def gtsrb_prepared():
    before = _snapshot(GTSRB)
    out = prepare_gtsrb(GTSRB, SIZE)
    assert _snapshot(GTSRB) == before  # the copy is never modified
    return out


@pytest.fixture(scope="module")
def coco_prepared():
    before = _snapshot(COCO_DIR)
    out = prepare_coco(COCO_DIR, SIZE)
    assert _snapshot(COCO_DIR) == before
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter=";"))


# --- GTSRB -----------------------------------------------------------------------------------------

def test_real_gtsrb_sizes_to_prepared_tensors(gtsrb_prepared):
    splits, classes, skipped = gtsrb_prepared
    assert classes == [f"{i:05d}" for i in range(43)] and skipped == []
    assert len(splits["train"].labels) == 43 * 100 and len(splits["test"].labels) == 1000
    assert np.bincount(splits["train"].labels, minlength=43).tolist() == [100] * 43
    for split in splits.values():
        assert split.images.shape[1:] == (3, SIZE, SIZE) and split.images.dtype == np.uint8
        assert split.masks.shape[1:] == (SIZE, SIZE) and set(np.unique(split.masks)) <= {0, 1}
    test_rows = {r["Filename"]: r for r in _rows(GTSRB / "GT-final_test.csv")}
    for i, rel in enumerate(splits["test"].ids[:50]):
        assert splits["test"].labels[i] == int(test_rows[Path(rel).name]["ClassId"])
    sides = [Image.open(GTSRB / "GTSRB" / "Final_Test" / "Images" / name).size for name in list(test_rows)[:200]]
    listed = [(int(test_rows[n]["Width"]), int(test_rows[n]["Height"])) for n in list(test_rows)[:200]]
    assert max(max(s) for s in listed) > SIZE  # the CSV's sizes: the originals, larger than prepared
    assert sum(a != b for a, b in zip(sides, listed)) > 0  # this copy's files are not all at the listed size


def test_a_resized_copy_gets_its_roi_boxes_scaled_and_is_reported():
    """The copy at ../shared/data holds 35 x 35 px files whose CSV rows give the original sizes
    (e.g. 53 x 54) and ROIs in those pixels: the ROI is scaled to the file, with a warning."""
    from attnrobust.data.gtsrb import scale_roi

    assert scale_roi((6, 5, 48, 49), (53, 54), (35, 35)) == (4, 3, 32, 32)
    assert scale_roi((6, 5, 48, 49), (53, 54), (53, 54)) == (6, 5, 48, 49)
    with pytest.warns(UserWarning, match=r"differ in size from their CSV's Width/Height"):
        prepare_gtsrb(GTSRB, SIZE)


def test_real_roi_boxes_become_the_masks(gtsrb_prepared):
    """Each mask is the CSV's ROI box at the file's resolution, resized with nearest neighbour."""
    from attnrobust.data.gtsrb import scale_roi

    splits, _, _ = gtsrb_prepared
    rows = {r["Filename"]: r for r in _rows(GTSRB / "GT-final_test.csv")}
    areas = []
    for i, rel in enumerate(splits["test"].ids[:40]):
        row = rows[Path(rel).name]
        listed = (int(row["Width"]), int(row["Height"]))
        roi = tuple(int(row[k]) for k in ("Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2"))
        width, height = Image.open(GTSRB / rel).size
        x1, y1, x2, y2 = scale_roi(roi, listed, (width, height))
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        full = np.zeros((height, width), np.uint8)
        full[y1:y2, x1:x2] = 1
        expected = np.asarray(Image.fromarray(full).resize((SIZE, SIZE), Image.Resampling.NEAREST))
        assert np.array_equal(splits["test"].masks[i], expected), rel
        image, mask = load_sample(GTSRB / rel, roi, SIZE, listed)
        assert np.array_equal(mask, expected) and np.array_equal(image, splits["test"].images[i])
        areas.append(expected.mean())
    assert 0.5 < float(np.mean(areas)) < 0.95  # the official ~10 % margin around the sign


def test_an_image_listed_but_missing_is_reported_and_skipped(tmp_path):
    """On a copy of two real classes and twenty real test rows, with one listed file deleted."""
    copy = tmp_path / "gtsrb"
    for cls in ("00000", "00001"):
        shutil.copytree(GTSRB / "GTSRB" / "Training" / cls, copy / "GTSRB" / "Training" / cls)
    images = copy / "GTSRB" / "Final_Test" / "Images"
    images.mkdir(parents=True)
    rows = [r for r in _rows(GTSRB / "GT-final_test.csv") if int(r["ClassId"]) < 2][:20]
    with open(copy / "GT-final_test.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=";")
        writer.writeheader()
        writer.writerows(rows)
    for r in rows:
        shutil.copy(GTSRB / "GTSRB" / "Final_Test" / "Images" / r["Filename"], images)
    gone = sorted((copy / "GTSRB" / "Training" / "00001").glob("*.ppm"))[3]
    gone.unlink()
    splits, _, skipped = prepare_gtsrb(copy, SIZE)
    assert skipped == [f"GTSRB/Training/00001/{gone.name}: listed in GT-00001.csv but missing on disk"]
    assert len(splits["train"].labels) == 199 and len(splits["test"].labels) == 20


# --- COCO ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("split", ["train2017", "val2017"])
def test_every_real_annotation_decodes_as_pycocotools_annToMask(split):
    path = COCO_DIR / "annotations" / f"instances_{split}.json"
    ours, reference = load_coco(path), COCO(str(path))
    kinds = {"polygon": 0, "multi_part": 0, "crowd_rle": 0}
    for ann in reference.dataset["annotations"]:
        mask, dropped = decode_annotation(ours, ann)
        assert dropped == 0 and np.array_equal(mask, reference.annToMask(ann)), ann["id"]
        seg = ann["segmentation"]
        if isinstance(seg, list):
            kinds["polygon"] += 1
            kinds["multi_part"] += len(seg) > 1
        else:
            assert ann["iscrowd"] == 1 and isinstance(seg["counts"], list)  # crowd: uncompressed RLE
            kinds["crowd_rle"] += 1
    assert all(kinds.values()), kinds  # the real files exercise every kind


def test_real_crowd_rle_also_decodes_when_compressed():
    """Real COCO ships crowds as uncompressed RLE; the same regions re-encoded as compressed RLE
    (counts a string, as results files and LVIS write them) decode to the same masks."""
    path = COCO_DIR / "annotations" / "instances_val2017.json"
    coco = load_coco(path)
    crowds = [a for a in coco.dataset["annotations"] if a["iscrowd"]]
    assert crowds
    for ann in crowds:
        h, w = ann["segmentation"]["size"]
        rle = mask_utils.frPyObjects(ann["segmentation"], h, w)
        compressed = {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}
        mask, _ = decode_annotation(coco, {**ann, "segmentation": compressed})
        assert np.array_equal(mask, COCO(str(path)).annToMask(ann))


def test_real_coco_ic_labels_and_foreground(coco_prepared):
    splits, classes, skipped = coco_prepared
    assert len(classes) == 80
    val = json.loads((COCO_DIR / "annotations" / "instances_val2017.json").read_text())
    cats = sorted(c["id"] for c in val["categories"])
    assert cats[0] == 1 and cats[-1] == 90 and len(cats) == 80  # non-contiguous ids, mapped to 0..79
    listed = {im["file_name"] for im in val["images"]}
    on_disk = {p.name for p in (COCO_DIR / "val2017").glob("*.jpg")}
    assert len(on_disk - listed) == 80  # unlisted jpgs: the parser goes by the JSON, not the folder
    assert all(Path(i).name in listed for i in splits["test"].ids)
    coco = load_coco(COCO_DIR / "annotations" / "instances_val2017.json")
    by_name = {im["file_name"]: im["id"] for im in val["images"]}
    for i, rel in enumerate(splits["test"].ids):
        instances, _ = instance_masks(coco, by_name[Path(rel).name])
        assert splits["test"].labels[i] == cats.index(dominant_category(instances)), rel
    assert len(splits["test"].labels) + sum("val2017/" in s and "no usable" in s for s in skipped) == len(listed)
    area = float(np.concatenate([s.masks.reshape(len(s.masks), -1) for s in splits.values()]).mean())
    assert 0.2 < area < 0.9  # COCO foreground covers a large share of most images
