"""MS-COCO 2017 in its official layout, parsed into the COCO-IC classification set (masks@coco): the
real download, a local copy (``data.coco.local_dir``) or the synthetic mimic
(:mod:`attnrobust.data.synthetic.coco`).

On-disk layout (``raw_dir``)::

    train2017/000000NNNNNN.jpg              (optional: real users often fetch only val2017)
    val2017/000000NNNNNN.jpg
    annotations/instances_{train,val}2017.json   {info, licenses, images, annotations, categories}

**COCO-IC** (the image-classification view of COCO used for foreground-mask defences):

- one sample per image that has at least one usable (decodable) non-crowd annotation;
  images without one are skipped and reported;
- label = the *dominant* category: the non-crowd category with the largest total mask area
  in the image (sum of its annotations' ``annToMask`` pixel counts; ties go to the lowest
  category id); crowd regions never decide the label;
- foreground mask = union of all the image's decodable annotations, crowd regions included by
  default (``include_crowd``), see :func:`attnrobust.masks.coco_masks.foreground_mask`;
- classes = all category ids of the annotation file, sorted, mapped to labels 0..K-1; class
  names are the categories' ``name``;
- splits: train2017 -> ``train``, val2017 -> ``test``. Without a ``train2017/`` image folder,
  val2017 is split by image id: ids divisible by 5 go to ``test``, the rest to ``train`` (stable
  when images are added or removed);
- images are resized to a square (bilinear), masks likewise (nearest); aspect ratio is not kept.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from pycocotools.coco import COCO

from attnrobust.data.layout import COCO_SPLIT_DIRS
from attnrobust.data.prepared import PreparedSplit
from attnrobust.errors import UserError
from attnrobust.masks.coco_masks import instance_masks, union_mask
from attnrobust.runtime import progress

log = logging.getLogger(__name__)

SPLIT_DIRS = COCO_SPLIT_DIRS
VAL_ONLY_TEST_EVERY = 5  # val2017-only: image ids divisible by this go to the test split


# --------------------------------------------------------------------------- reading COCO


def _annotation_path(raw_dir: Path, folder: str) -> Path:
    return raw_dir / "annotations" / f"instances_{folder}.json"


def _check_schema(data: object, path: Path) -> None:
    """Raise UserError unless ``data`` has the lists and keys pycocotools' index needs."""
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a COCO instances file (top level is not an object)")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise UserError(f"{path}: not a COCO instances file (no '{key}' list); re-extract "
                            "annotations_trainval2017.zip")
    needs = {"images": ("id", "width", "height", "file_name"), "annotations": ("id", "image_id", "category_id"),
             "categories": ("id", "name")}
    for key, fields in needs.items():
        for i, entry in enumerate(data[key]):
            missing = [f for f in fields if not isinstance(entry, dict) or f not in entry]
            if missing:
                raise UserError(f"{path}: {key}[{i}] lacks {', '.join(missing)}; the file is damaged, "
                                "re-extract annotations_trainval2017.zip")


def load_coco(path: Path) -> COCO:
    """A pycocotools ``COCO`` index of ``path``, or a UserError naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: COCO annotations not found; run `dvc repro fetch@coco` (synthetic or real "
                        f"download), or unzip annotations_trainval2017.zip into {path.parent.parent}")
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); the file is damaged, re-download or re-extract "
                        "annotations_trainval2017.zip") from exc
    _check_schema(data, path)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress
        coco.createIndex()
    return coco


# --------------------------------------------------------------------------- COCO-IC


def dominant_category(instances: list[tuple[dict, np.ndarray]]) -> int | None:
    """Category id with the largest total non-crowd mask area (ties: lowest id); None if there is none."""
    area: dict[int, int] = {}
    for ann, mask in instances:
        if not ann.get("iscrowd", 0):
            area[ann["category_id"]] = area.get(ann["category_id"], 0) + int(mask.sum())
    if not area:
        return None
    return min(area, key=lambda cid: (-area[cid], cid))


class ImageSizeMismatch(ValueError):
    """The image file's size differs from the width and height its annotations were made for."""


def load_image(path: Path, size: tuple[int, int], image_size: int) -> np.ndarray:
    """RGB image uint8 (3, S, S), resized bilinearly; ``size`` = (width, height) the annotations expect.

    Raises ``OSError``/``ValueError``/``SyntaxError`` for a missing, corrupt or truncated file and
    :class:`ImageSizeMismatch` when the file does not have the annotated size.
    """
    with Image.open(path) as im:
        im.load()  # decode now: a truncated JPEG fails here
        image = im.convert("RGB")
    if image.size != size:
        raise ImageSizeMismatch(f"image is {image.size[0]}x{image.size[1]}, annotations say {size[0]}x{size[1]}")
    image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(image).transpose(2, 0, 1)  # (3, S, S)


def _resize_mask(mask: np.ndarray, image_size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(mask).resize((image_size, image_size), Image.Resampling.NEAREST))


class _Sample(NamedTuple):
    image: np.ndarray  # (3, S, S) uint8
    mask: np.ndarray  # (S, S) uint8
    label: int


def _prepare_image(coco: COCO, img_id: int, image_dir: Path, class_index: dict[int, int], image_size: int,
                   include_crowd: bool, skipped: list[str]) -> _Sample | None:
    """One COCO-IC sample, or None (with the reason appended to ``skipped``)."""
    info = coco.imgs[img_id]
    relpath = f"{image_dir.name}/{info['file_name']}"
    instances, issues = instance_masks(coco, img_id, include_crowd=True)
    skipped.extend(str(issue) for issue in issues)
    unknown = [ann["id"] for ann, _ in instances if ann["category_id"] not in class_index]
    if unknown:
        skipped.extend(f"annotation {i} of image {img_id} skipped: category_id not in categories" for i in unknown)
        instances = [(ann, m) for ann, m in instances if ann["category_id"] in class_index]
    category = dominant_category(instances)
    if category is None:
        skipped.append(f"{relpath}: no usable non-crowd annotation")
        return None
    try:
        image = load_image(image_dir / info["file_name"], (int(info["width"]), int(info["height"])), image_size)
    except ImageSizeMismatch as exc:
        skipped.append(f"{relpath}: {exc}")
        return None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        skipped.append(f"{relpath}: unreadable image ({exc})")
        return None
    used = [m for ann, m in instances if include_crowd or not ann.get("iscrowd", 0)]
    mask = union_mask(used, int(info["height"]), int(info["width"]))
    return _Sample(image, _resize_mask(mask, image_size), class_index[category])


def _build_split(coco: COCO, image_dir: Path, img_ids: list[int], class_index: dict[int, int],
                 image_size: int, include_crowd: bool, skipped: list[str]) -> PreparedSplit:
    samples, ids = [], []
    for img_id in progress(img_ids, desc=f"coco {image_dir.name}", unit="img"):
        sample = _prepare_image(coco, img_id, image_dir, class_index, image_size, include_crowd, skipped)
        if sample is not None:
            samples.append(sample)
            ids.append(f"{image_dir.name}/{coco.imgs[img_id]['file_name']}")
    s = image_size
    return PreparedSplit(
        images=np.stack([x.image for x in samples]) if samples else np.zeros((0, 3, s, s), np.uint8),
        masks=np.stack([x.mask for x in samples]) if samples else np.zeros((0, s, s), np.uint8),
        labels=np.asarray([x.label for x in samples], np.int64),
        ids=ids,
    )


def _split_plan(raw_dir: Path) -> dict[str, tuple[COCO, Path, list[int]]]:
    """split -> (COCO index, image folder, image ids). Falls back to splitting val2017 by id."""
    val_dir = raw_dir / SPLIT_DIRS["test"]
    val = load_coco(_annotation_path(raw_dir, "val2017"))
    if not val_dir.is_dir():
        raise UserError(f"{val_dir}: image folder not found; run `dvc repro fetch@coco` or unzip val2017.zip "
                        f"into {raw_dir}")
    train_dir = raw_dir / SPLIT_DIRS["train"]
    if train_dir.is_dir():
        train = load_coco(_annotation_path(raw_dir, "train2017"))
        if sorted(train.cats) != sorted(val.cats):
            raise UserError(f"{raw_dir / 'annotations'}: train2017 and val2017 have different categories; "
                            "use annotation files from the same release")
        return {"train": (train, train_dir, sorted(train.imgs)), "test": (val, val_dir, sorted(val.imgs))}
    log.warning("%s: no train2017/ folder; splitting val2017 by image id (id %% %d == 0 -> test, rest -> train)",
                raw_dir, VAL_ONLY_TEST_EVERY)
    ids = sorted(val.imgs)
    return {"train": (val, val_dir, [i for i in ids if i % VAL_ONLY_TEST_EVERY]),
            "test": (val, val_dir, [i for i in ids if i % VAL_ONLY_TEST_EVERY == 0])}


def prepare_coco(raw_dir: Path, image_size: int,
                 include_crowd: bool = True) -> tuple[dict[str, PreparedSplit], list[str], list[str]]:
    """Build COCO-IC (see the module docstring) from a real or synthetic COCO 2017 under ``raw_dir``.

    Returns ({"train", "test"} splits, class names in label order, skipped items with reasons).
    Broken annotations and corrupt images are skipped and reported; a missing or invalid
    annotation file or a missing val2017/ folder raises :class:`UserError`.
    """
    raw_dir = Path(raw_dir)
    plan = _split_plan(raw_dir)
    cats = plan["test"][0].cats
    class_ids = sorted(cats)
    class_index = {cid: label for label, cid in enumerate(class_ids)}
    skipped: list[str] = []
    splits = {name: _build_split(coco, image_dir, ids, class_index, image_size, include_crowd, skipped)
              for name, (coco, image_dir, ids) in plan.items()}
    return splits, [str(cats[cid]["name"]) for cid in class_ids], skipped

