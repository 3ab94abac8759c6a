"""COCO: the synthetic mimic is real COCO to real parsers; masks and COCO-IC labels are right; bad data is survived."""
from __future__ import annotations

import filecmp
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from attnrobust.data.coco import dominant_category, load_coco, prepare_coco
from attnrobust.data.synthetic.coco import CATEGORIES, CocoSynthConfig, generate_coco, uncompressed_rle
from attnrobust.errors import UserError
from attnrobust.masks.coco_masks import AnnotationIssue, foreground_mask

# pycocotools 2.0.11 on numpy 2 warns on every decode; the decoding itself is verified below
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

SMALL = CocoSynthConfig(train_images=12, val_images=10, image_size=48)


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("coco")
    generate_coco(out, SMALL, seed=3)
    return out


@pytest.fixture(scope="module", params=["train2017", "val2017"])
def coco(request: pytest.FixtureRequest, coco_dir: Path) -> COCO:
    return COCO(str(coco_dir / "annotations" / f"instances_{request.param}.json"))


def _union_of_ann_to_mask(coco: COCO, img_id: int, include_crowd: bool = True) -> np.ndarray:
    info = coco.imgs[img_id]
    out = np.zeros((info["height"], info["width"]), np.uint8)
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=img_id, iscrowd=None if include_crowd else False)):
        out |= coco.annToMask(ann)
    return out


# --------------------------------------------------------------------------- the mimic is real COCO


def test_layout_and_schema_match_coco_2017(coco_dir: Path) -> None:
    for split, n in (("train2017", SMALL.train_images), ("val2017", SMALL.val_images)):
        data = json.loads((coco_dir / "annotations" / f"instances_{split}.json").read_text())
        assert list(data) == ["info", "licenses", "images", "annotations", "categories"]
        assert len(data["images"]) == n
        for img in data["images"]:
            assert img["file_name"] == f"{img['id']:012d}.jpg"
            assert (coco_dir / split / img["file_name"]).is_file()
        ids = [c["id"] for c in data["categories"]]
        assert ids != list(range(1, len(ids) + 1)), "category ids must be non-contiguous, as in COCO"
        assert all(c["supercategory"] and c["name"] for c in data["categories"])


def test_every_annotation_kind_is_present(coco: COCO) -> None:
    anns = list(coco.anns.values())
    multi_part = [a for a in anns if isinstance(a["segmentation"], list) and len(a["segmentation"]) > 1]
    crowd = [a for a in anns if a["iscrowd"] == 1]
    compressed = [a for a in anns
                  if isinstance(a["segmentation"], dict) and isinstance(a["segmentation"]["counts"], str)]
    assert multi_part and compressed
    assert crowd and all(isinstance(a["segmentation"]["counts"], list) for a in crowd)
    for a in crowd:
        info = coco.imgs[a["image_id"]]
        assert a["segmentation"]["size"] == [info["height"], info["width"]]
        assert sum(a["segmentation"]["counts"]) == info["height"] * info["width"]
    assert any(not coco.imgToAnns[i] for i in coco.imgs), "each split needs an image without annotations"


def test_area_and_bbox_are_pycocotools_values(coco: COCO) -> None:
    for ann in coco.anns.values():
        rle = coco.annToRLE(ann)
        assert ann["area"] == pytest.approx(float(mask_utils.area(rle)))
        assert ann["bbox"] == pytest.approx(mask_utils.toBbox(rle).tolist())
        assert ann["area"] > 0


def test_uncompressed_rle_is_column_major_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    for first in (0, 1):
        mask = (rng.random((7, 5)) < 0.4).astype(np.uint8)
        mask[0, 0] = first
        rle = uncompressed_rle(mask)
        assert rle["size"] == [7, 5] and sum(rle["counts"]) == 35
        assert (rle["counts"][0] == 0) == bool(first)  # counts start with a (possibly empty) run of zeros
        np.testing.assert_array_equal(mask_utils.decode(mask_utils.frPyObjects(rle, 7, 5)), mask)


def test_torchvision_cocodetection_reads_the_mimic(coco_dir: Path) -> None:
    from torchvision.datasets import CocoDetection

    ds = CocoDetection(str(coco_dir / "val2017"), str(coco_dir / "annotations" / "instances_val2017.json"))
    assert len(ds) == SMALL.val_images
    targets = [ds[i][1] for i in range(len(ds))]
    assert any(t == [] for t in targets)
    image, target = next(ds[i] for i, t in enumerate(targets) if t)
    assert image.mode == "RGB" and {"segmentation", "bbox", "category_id", "iscrowd"} <= set(target[0])


# --------------------------------------------------------------------------- foreground masks


def test_foreground_mask_is_union_of_ann_to_mask(coco: COCO) -> None:
    for img_id in coco.imgs:
        issues: list[AnnotationIssue] = []
        mask = foreground_mask(coco, img_id, issues=issues)
        assert not issues
        expected = _union_of_ann_to_mask(coco, img_id)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
        np.testing.assert_array_equal(mask, expected)  # 1 inside every annotation, 0 outside all of them
        no_crowd = foreground_mask(coco, img_id, include_crowd=False)
        np.testing.assert_array_equal(no_crowd, _union_of_ann_to_mask(coco, img_id, include_crowd=False))


def test_image_without_annotations_has_all_zero_mask_of_image_shape(coco: COCO) -> None:
    img_id = next(i for i in coco.imgs if not coco.imgToAnns[i])
    mask = foreground_mask(coco, img_id)
    assert mask.shape == (coco.imgs[img_id]["height"], coco.imgs[img_id]["width"])  # not merge([])'s 0x0
    assert not mask.any()


def _coco_from(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    return coco


def test_broken_annotations_are_skipped_and_reported() -> None:
    h, w = 10, 12
    square = [2.0, 2.0, 6.0, 2.0, 6.0, 6.0, 2.0, 6.0]
    segs = {
        1: [square],  # valid
        2: [[1.0, 1.0, 3.0, 3.0]],  # 4 numbers: pycocotools takes it for a bbox
        3: [[1.0, 1.0]],  # 2 numbers: "input type is not supported"
        4: [],  # empty: IndexError in frPyObjects
        5: {"size": [h + 1, w], "counts": [h * w]},  # RLE size differs from the image
        6: {"size": [h, w], "counts": [5, 3]},  # run lengths short of h*w: garbage memory if decoded
        7: {"size": [h, w], "counts": "\x7f\x7f"},  # not a compressed RLE string
        8: [[8.0, 8.0, 11.0, 8.0, 11.0, 9.0], [0.0, 0.0, 1.0, 1.0]],  # valid part + 4-number part
    }
    coco = _coco_from({
        "images": [{"id": 5, "height": h, "width": w, "file_name": "x.jpg"}],
        "annotations": [{"id": i, "image_id": 5, "category_id": 1, "iscrowd": 0, "segmentation": s}
                        for i, s in segs.items()],
        "categories": [{"id": 1, "name": "thing"}],
    })
    issues: list[AnnotationIssue] = []
    mask = foreground_mask(coco, 5, issues=issues)
    expected = coco.annToMask(coco.anns[1]) | coco.annToMask({**coco.anns[8], "segmentation": segs[8][:1]})
    np.testing.assert_array_equal(mask, expected)
    assert {i.ann_id for i in issues if i.skipped} == {2, 3, 4, 5, 6, 7}
    assert [i.ann_id for i in issues if not i.skipped] == [8]
    assert all("image 5" in str(i) for i in issues)


# --------------------------------------------------------------------------- COCO-IC labels


def _instance(cid: int, area: int, iscrowd: int = 0) -> tuple[dict, np.ndarray]:
    mask = np.zeros(100, np.uint8)
    mask[:area] = 1
    return {"category_id": cid, "iscrowd": iscrowd}, mask.reshape(10, 10)


def test_dominant_category_rule() -> None:
    assert dominant_category([_instance(3, 20), _instance(18, 30)]) == 18
    assert dominant_category([_instance(18, 20), _instance(3, 20)]) == 3  # tie: lowest id
    assert dominant_category([_instance(3, 25), _instance(18, 15), _instance(18, 15)]) == 18  # total area
    assert dominant_category([_instance(3, 10), _instance(18, 90, iscrowd=1)]) == 3  # crowds never decide
    assert dominant_category([_instance(18, 90, iscrowd=1)]) is None


def test_prepared_label_is_the_dominant_object(coco_dir: Path) -> None:
    splits, names, skipped = prepare_coco(coco_dir, image_size=24)
    assert names == [c.name for c in sorted(CATEGORIES, key=lambda c: c.id)]
    class_ids = sorted(c.id for c in CATEGORIES)
    for split, folder in (("train", "train2017"), ("test", "val2017")):
        coco = load_coco(coco_dir / "annotations" / f"instances_{folder}.json")
        by_name = {info["file_name"]: i for i, info in coco.imgs.items()}
        data = splits[split]
        assert data.images.shape == (len(data.labels), 3, 24, 24) and data.masks.shape == (len(data.labels), 24, 24)
        assert len(data.labels) == sum(1 for i in coco.imgs if coco.imgToAnns[i])
        for sample_id, label in zip(data.ids, data.labels, strict=True):
            anns = [a for a in coco.imgToAnns[by_name[sample_id.split("/")[1]]] if not a["iscrowd"]]
            largest = max(anns, key=lambda a: a["area"])
            assert all(a["area"] < 0.6 * largest["area"] for a in anns if a is not largest), "clearly dominant"
            assert class_ids[label] == largest["category_id"]
        assert set(np.unique(data.masks)) == {0, 1}
    assert sum("no usable non-crowd annotation" in s for s in skipped) >= 2


# --------------------------------------------------------------------------- bad files


def test_corrupt_and_truncated_jpegs_are_skipped_and_named(coco_dir: Path, tmp_path: Path) -> None:
    raw = tmp_path / "coco"
    shutil.copytree(coco_dir, raw)
    coco = load_coco(raw / "annotations" / "instances_val2017.json")
    victims = [coco.imgs[i]["file_name"] for i in sorted(coco.imgs) if coco.imgToAnns[i]][:3]
    truncated = raw / "val2017" / victims[0]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    (raw / "val2017" / victims[1]).write_bytes(b"not a jpeg")
    Image.new("RGB", (7, 5)).save(raw / "val2017" / victims[2])  # decodable, but not the annotated size
    splits, _, skipped = prepare_coco(raw, image_size=16)
    for name in victims[:2]:
        assert any(s.startswith(f"val2017/{name}: unreadable image") for s in skipped)
    assert any(s.startswith(f"val2017/{victims[2]}: image is 7x5, annotations say") for s in skipped)
    assert not set(f"val2017/{name}" for name in victims) & set(splits["test"].ids)
    assert len(splits["test"].ids) == sum(1 for i in coco.imgs if coco.imgToAnns[i]) - 3


def test_missing_or_invalid_annotation_file_is_a_user_error(coco_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"instances_val2017\.json: COCO annotations not found.*fetch@coco"):
        prepare_coco(tmp_path, image_size=16)
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text('{"images": [')
    with pytest.raises(UserError, match=r"instances_val2017\.json: not valid JSON"):
        prepare_coco(tmp_path, image_size=16)


def test_val2017_only_is_split_by_image_id(coco_dir: Path, tmp_path: Path) -> None:
    raw = tmp_path / "coco"
    shutil.copytree(coco_dir / "val2017", raw / "val2017")
    shutil.copytree(coco_dir / "annotations", raw / "annotations")  # train json present, images not
    splits, _, _ = prepare_coco(raw, image_size=16)
    full, _, _ = prepare_coco(coco_dir, image_size=16)
    test_ids = {int(Path(i).stem) for i in splits["test"].ids}
    train_ids = {int(Path(i).stem) for i in splits["train"].ids}
    assert all(i % 5 == 0 for i in test_ids) and all(i % 5 for i in train_ids)
    assert {f"val2017/{i:012d}.jpg" for i in test_ids | train_ids} == set(full["test"].ids)


# --------------------------------------------------------------------------- determinism and config


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    cfg = CocoSynthConfig(train_images=4, val_images=3, image_size=32)
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        generate_coco(tmp_path / name, cfg, seed=seed)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 4 + 3 + 2
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", files, shallow=False)
    assert not mismatch and not errors
    assert filecmp.cmpfiles(tmp_path / "a", tmp_path / "c", files, shallow=False)[1]


@pytest.mark.parametrize("bad", [{"train_images": 1}, {"image_size": 8}, {"min_objects": 5, "max_objects": 4},
                                 {"crowd_fraction": 1.5}, {"jpeg_quality": 100}])
def test_config_range_checks(bad: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        CocoSynthConfig(**bad)


def _scenes(cfg: CocoSynthConfig, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(union masks at 16 x 16 (n, 256), dominant category index (n,), dominant centroid in image
    fractions (n, 2)) of ``n`` annotated scenes, as masks@coco builds the mask: every annotation."""
    from attnrobust.data.synthetic.coco import CATEGORIES, _render_scene, _ScenePlan

    ids = [c.id for c in CATEGORIES]
    masks, labels, centres = [], [], []
    for i in range(n):
        pixels, objects = _render_scene(np.random.default_rng([seed, i]), cfg, _ScenePlan(True, False))
        union = np.zeros(pixels.shape[:2], np.uint8)
        for obj in objects:
            union |= obj.mask
        small = torch.nn.functional.interpolate(torch.from_numpy(union)[None, None].float(), (16, 16), mode="area")
        masks.append(small.flatten())
        labels.append(ids.index(objects[0].category_id))
        ys, xs = np.nonzero(objects[0].mask)
        centres.append((xs.mean() / pixels.shape[1], ys.mean() / pixels.shape[0]))
    return torch.stack(masks), torch.tensor(labels), np.asarray(centres)


def _mask_only_knn(cfg: CocoSynthConfig) -> float:
    """Accuracy of a 5-nearest-neighbour classifier that sees only the union mask."""
    train_x, train_y, _ = _scenes(cfg, 400, 0)
    test_x, test_y, _ = _scenes(cfg, 200, 1)
    nearest = torch.cdist(test_x, train_x).topk(5, largest=False).indices
    return float((torch.mode(train_y[nearest], 1).values == test_y).float().mean())


def test_the_mask_alone_does_not_give_the_class_away():
    """Issue 16: with a shape per category the union mask revealed the label (a mask-only CNN
    reached 87%); with outlines drawn at random the class lives in colour and texture only."""
    leaky = _mask_only_knn(CocoSynthConfig(image_size=32, shapes="category", dominant_position="centre"))
    fair = _mask_only_knn(CocoSynthConfig(image_size=32))  # the default: shapes random, anywhere
    assert leaky > 0.25  # measured 0.365 (chance 0.1)
    assert fair < 0.2  # measured 0.095


def test_the_dominant_object_is_anywhere_by_default():
    _, _, centred = _scenes(CocoSynthConfig(image_size=32, dominant_position="centre"), 100, 0)
    _, _, anywhere = _scenes(CocoSynthConfig(image_size=32), 100, 0)
    off_centre = lambda c: float((np.abs(c - 0.5).max(1) > 0.2).mean())  # noqa: E731
    assert off_centre(centred) < 0.1
    assert off_centre(anywhere) > 0.4


def test_scenes_hold_a_small_object_anywhere_among_smaller_distractors(tmp_path: Path):
    """S3TA's search task (issue 16): the labelled object is at most a quarter of the image, off
    the central half-crop often, and larger than every distractor; the rest is COCO's layout."""
    from attnrobust.data.synthetic.coco import ScenesSynthConfig

    cfg = ScenesSynthConfig(train_images=60, val_images=10, image_size=64)
    _, _, centres = _scenes(cfg, 200, 0)
    assert float((np.abs(centres - 0.5).max(1) > 0.25).mean()) > 0.4  # measured 0.57: a central half misses it
    generate_coco(tmp_path, cfg, seed=0)
    data = json.loads((tmp_path / "annotations" / "instances_train2017.json").read_text())
    sizes = {img["id"]: img["width"] * img["height"] for img in data["images"]}
    largest: dict[int, float] = {}
    for ann in data["annotations"]:
        if not ann["iscrowd"]:
            largest[ann["image_id"]] = max(largest.get(ann["image_id"], 0.0), ann["area"] / sizes[ann["image_id"]])
    shares = np.asarray(list(largest.values()))
    assert len(shares) > 50 and shares.max() <= 0.25 and 0.04 < np.median(shares) < 0.15  # measured median 0.076
    assert cfg.distractor_scale[1] < cfg.dominant_scale[0]  # every distractor smaller than the label


def test_scenes_are_synthetic_even_with_data_source_real(tmp_path: Path, capsys):
    from attnrobust.data.fetch import fetch_dataset

    values = {**{k: getattr(SMALL, k) for k in SMALL.__dataclass_fields__}, "local_dir": str(tmp_path / "s"),
              "dominant_scale": [0.18, 0.24], "distractor_scale": [0.06, 0.14]}
    fetch_dataset("scenes", tmp_path / "s", source="real", seed=0, synth_values=values, where="data.scenes")
    assert (tmp_path / "s" / "annotations" / "instances_val2017.json").is_file()
    assert "no official download" in capsys.readouterr().err
