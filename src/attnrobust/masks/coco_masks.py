"""COCO foreground masks: the union of ``annToMask`` over an image's annotations, robust to bad data.

pycocotools trusts its input, and several real-world defects crash it or, worse, silently
corrupt a mask (verified on pycocotools 2.0.11):

- ``frPyObjects`` looks only at the *first* polygon: 4 numbers are taken for a bbox
  (``TypeError``), 2 numbers raise ``Exception``, an empty list raises ``IndexError``, and a
  4-number polygon after a valid one is rasterised as a degenerate shape.
  We keep polygons with ``len >= 6`` and an even length (detectron2's filter).
- Uncompressed RLE (``counts`` a list) must go through ``frPyObjects``; ``frPyObjects`` takes the
  mask size from the RLE's own ``size`` and ignores the image's, so a wrong ``size`` gives a mask
  of the wrong shape. Counts that sum to *less* than h*w decode to uninitialised memory, without
  an error, so the run lengths are checked before decoding (compressed strings too).
- ``merge([])`` is a 0x0 mask.

An annotation that cannot be decoded is skipped and reported as an :class:`AnnotationIssue`;
it never stops the run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO


@dataclass(frozen=True)
class AnnotationIssue:
    """A defect in one annotation. ``skipped`` is False when only some polygon parts were dropped."""

    image_id: int
    ann_id: int | None
    reason: str
    skipped: bool = True

    def __str__(self) -> str:
        action = "skipped" if self.skipped else "partly used"
        return f"annotation {self.ann_id} of image {self.image_id} {action}: {self.reason}"


class _Broken(ValueError):
    """An annotation that cannot be decoded; the message is the reason."""


def _is_polygon(part: object) -> bool:
    """A usable polygon part: a flat list of >= 3 finite (x, y) pairs."""
    return (isinstance(part, list) and len(part) >= 6 and len(part) % 2 == 0
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in part))


def _compressed_total(counts: str | bytes) -> int:
    """Sum of the run lengths in a compressed RLE string (pycocotools' ``rleFrString``, in Python)."""
    data = counts.encode("ascii") if isinstance(counts, str) else counts
    runs: list[int] = []
    p = 0
    while p < len(data):
        x, k, more = 0, 0, True
        while more:
            if p >= len(data):
                raise _Broken("compressed RLE string ends inside a number")
            c = data[p] - 48
            if not 0 <= c < 64:
                raise _Broken(f"compressed RLE has an invalid character {chr(data[p])!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]  # runs after the third are stored as differences
        if x < 0:
            raise _Broken("compressed RLE has a negative run length")
        runs.append(x)
    return sum(runs)


def _check_rle(seg: dict, height: int, width: int) -> None:
    """Raise :class:`_Broken` unless ``seg`` is an RLE of exactly ``height`` x ``width`` pixels."""
    size = seg.get("size")
    if not (isinstance(size, list) and size == [height, width]):
        raise _Broken(f"RLE size {size} is not the image's [height, width] = {[height, width]}")
    counts = seg.get("counts")
    if isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise _Broken("uncompressed RLE counts must be non-negative integers")
        total = sum(counts)
    elif isinstance(counts, (str, bytes)):
        try:
            total = _compressed_total(counts)
        except (UnicodeEncodeError, IndexError) as exc:
            raise _Broken(f"compressed RLE string is not valid ({exc})") from exc
    else:
        raise _Broken(f"RLE counts of type {type(counts).__name__}")
    if total != height * width:
        raise _Broken(f"RLE run lengths sum to {total}, not height*width = {height * width}")


def _usable_segmentation(ann: dict, height: int, width: int) -> tuple[list | dict, int]:
    """The annotation's segmentation with bad polygon parts removed, and how many were removed."""
    seg = ann.get("segmentation")
    if isinstance(seg, list):
        if not seg:
            raise _Broken("empty segmentation []")
        polygons = [p for p in seg if _is_polygon(p)]
        if not polygons:
            raise _Broken("no polygon with >= 3 points (need an even number >= 6 of coordinates)")
        return polygons, len(seg) - len(polygons)
    if isinstance(seg, dict):
        _check_rle(seg, height, width)
        return seg, 0
    raise _Broken(f"segmentation of type {type(seg).__name__}")


def decode_annotation(coco: COCO, ann: dict) -> tuple[np.ndarray, int]:
    """``annToMask`` of one annotation, (h, w) uint8 in {0, 1}, and the number of polygon parts dropped.

    Raises ``ValueError`` (with the reason) for an annotation that cannot be decoded.
    """
    info = coco.imgs[ann["image_id"]]
    height, width = int(info["height"]), int(info["width"])
    seg, dropped = _usable_segmentation(ann, height, width)
    try:
        mask = coco.annToMask({**ann, "segmentation": seg})
    except Exception as exc:  # pycocotools raises bare Exception ("input type is not supported")
        raise _Broken(f"pycocotools cannot decode it ({type(exc).__name__}: {exc})") from exc
    if mask.shape != (height, width):
        raise _Broken(f"decoded mask is {mask.shape}, image is {(height, width)}")
    return mask, dropped


def instance_masks(coco: COCO, img_id: int,
                   include_crowd: bool = True) -> tuple[list[tuple[dict, np.ndarray]], list[AnnotationIssue]]:
    """(annotation, mask) for every decodable annotation of ``img_id``, and the issues found.

    ``include_crowd=False`` leaves out ``iscrowd=1`` annotations (COCO's ``getAnnIds(iscrowd=False)``).
    """
    decoded, issues = [], []
    for ann in coco.imgToAnns.get(img_id, []):
        if ann.get("iscrowd", 0) and not include_crowd:
            continue
        try:
            mask, dropped = decode_annotation(coco, ann)
        except ValueError as exc:
            issues.append(AnnotationIssue(img_id, ann.get("id"), str(exc)))
            continue
        if dropped:
            issues.append(AnnotationIssue(img_id, ann.get("id"), f"dropped {dropped} invalid polygon part(s)",
                                          skipped=False))
        decoded.append((ann, mask))
    return decoded, issues


def union_mask(masks: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """Pixel-wise OR of (h, w) masks; all zeros (never 0x0) when there are none."""
    out = np.zeros((height, width), np.uint8)
    for mask in masks:
        out |= mask
    return out


def foreground_mask(coco: COCO, img_id: int, include_crowd: bool = True,
                    issues: list[AnnotationIssue] | None = None) -> np.ndarray:
    """Foreground mask (h, w) uint8 in {0, 1} of ``img_id``: the union of its annotations' masks.

    Crowd regions count as foreground unless ``include_crowd=False``. An image without
    annotations has an all-zero mask. Annotations that cannot be decoded are skipped; pass a list
    as ``issues`` to receive one :class:`AnnotationIssue` per problem.
    """
    info = coco.imgs[img_id]
    decoded, found = instance_masks(coco, img_id, include_crowd)
    if issues is not None:
        issues.extend(found)
    return union_mask([m for _, m in decoded], int(info["height"]), int(info["width"]))
