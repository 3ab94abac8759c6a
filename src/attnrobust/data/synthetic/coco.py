"""The synthetic COCO 2017: a deterministic mimic written in the real layout (fetch@coco), which
the parser (:mod:`attnrobust.data.coco`) reads like the real thing.

The synthetic scenes hold 2-4 annotated objects, one clearly dominant (the label, at least
about twice the area of any other). A category is its colour and texture (each shared by two or
three categories; only the pair is unique), drawn rotated and at varying size. Its outline says
nothing: with ``shapes: random`` (the default) every object takes a shape drawn from all the
categories' shapes, so a model that sees only the mask (the ``mask: only`` floor) is near chance,
and with ``dominant_position: anywhere`` the dominant object is anywhere in the image, not near
its centre. (``shapes: category`` and ``dominant_position: centre`` give the earlier design, in
which the union mask alone revealed the class: a mask-only CNN reached 87%, issue 16.)
Unannotated distractors drawn with random categories' looks, and clutter blobs in the same
colours, make the background misleading: a model that sees only the foreground loses nothing
and gains clarity.
"""
from __future__ import annotations

import datetime
import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from attnrobust.runtime import progress

MAX_COCO_ID = 581929  # largest image id in COCO 2017; synthetic ids are drawn below it
CROWD_ID_OFFSET = 900_000_000_000  # real COCO crowd annotations have ids around 9e11


# --------------------------------------------------------------------------- synthetic config


@dataclass(frozen=True)
class CocoSynthConfig:
    """``data.coco``: where masks@coco reads COCO, and the size and difficulty of the synthetic
    mimic. Sizes are pixels of the written JPEGs."""

    local_dir: str = "data/raw/coco"  # fetch@coco's output, or an existing copy in the official layout
    train_images: int = 1000  # images in train2017 (a few have no annotations)
    val_images: int = 250  # images in val2017
    image_size: int = 64  # longer side of every image; the shorter side is 75-100% of it
    min_objects: int = 2  # annotated non-crowd objects per image, the dominant one included
    max_objects: int = 4
    distractors: int = 4  # unannotated objects per image, drawn with random categories' looks
    crowd_fraction: float = 0.1  # images that also get an iscrowd=1 group (uncompressed RLE)
    rle_fraction: float = 0.1  # non-crowd annotations written as compressed RLE (counts a str)
    empty_fraction: float = 0.01  # images without annotations (at least one per split)
    colour_jitter: float = 0.12  # std of the per-channel scale of object colours (0.1 = 10%)
    noise_std: float = 6.0  # Gaussian pixel noise, 8-bit levels
    jpeg_quality: int = 90  # PIL JPEG quality (1..95)
    shapes: Literal["random", "category"] = "random"  # every object's outline: drawn at random | its category's own
    dominant_position: Literal["anywhere", "centre"] = "anywhere"  # the labelled object: anywhere | near the centre
    dominant_scale: tuple[float, float] = (0.28, 0.38)  # (min, max) radius of the labelled object, x shorter side
    distractor_scale: tuple[float, float] = (0.1, 0.26)  # (min, max) radius of the unannotated distractors, same units

    def __post_init__(self) -> None:
        checks = {
            "train_images": 2 <= self.train_images <= 200_000,
            "val_images": 2 <= self.val_images <= 200_000,
            "image_size": 16 <= self.image_size <= 1024,
            "min_objects": 1 <= self.min_objects <= self.max_objects,
            "max_objects": self.max_objects <= 8,
            "distractors": 0 <= self.distractors <= 16,
            "crowd_fraction": 0.0 <= self.crowd_fraction <= 1.0,
            "rle_fraction": 0.0 <= self.rle_fraction <= 1.0,
            "empty_fraction": 0.0 <= self.empty_fraction < 0.5,
            "colour_jitter": 0.0 <= self.colour_jitter <= 0.5,
            "noise_std": 0.0 <= self.noise_std <= 64.0,
            "jpeg_quality": 1 <= self.jpeg_quality <= 95,
            "shapes": self.shapes in ("random", "category"),
            "dominant_position": self.dominant_position in ("anywhere", "centre"),
            "dominant_scale": 0.05 <= self.dominant_scale[0] <= self.dominant_scale[1] <= 0.5,
            "distractor_scale": 0.02 <= self.distractor_scale[0] <= self.distractor_scale[1] <= 0.5,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"out of range: {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)} (need train_images, "
                "val_images >= 2; 16 <= image_size <= 1024; 1 <= min_objects <= max_objects <= 8; "
                "0 <= distractors <= 16; fractions in [0, 1], empty_fraction < 0.5; colour_jitter <= 0.5; "
                "noise_std <= 64; 1 <= jpeg_quality <= 95; shapes random or category; dominant_position "
                "anywhere or centre; dominant_scale, distractor_scale [min, max] with 0.05 (0.02) <= min <= "
                "max <= 0.5)")


@dataclass(frozen=True)
class ScenesSynthConfig(CocoSynthConfig):
    """``data.scenes``: S3TA's search task (issue 16), the same scenes with a small labelled object
    (radius 0.18-0.24 of the shorter side: 4-15% of the image area, never above a quarter) anywhere
    among smaller distractors, so that a fixed central crop misses it most of the time."""

    local_dir: str = "data/raw/scenes"
    dominant_scale: tuple[float, float] = (0.18, 0.24)
    distractor_scale: tuple[float, float] = (0.06, 0.14)


# --------------------------------------------------------------------------- categories and shapes

RGB = tuple[float, float, float]
RED: RGB = (210.0, 50.0, 50.0)
BLUE: RGB = (50.0, 90.0, 210.0)
YELLOW: RGB = (230.0, 200.0, 50.0)
GREEN: RGB = (50.0, 160.0, 70.0)
PURPLE: RGB = (150.0, 70.0, 190.0)
PALETTE = (RED, BLUE, YELLOW, GREEN, PURPLE)


class CategoryLook(NamedTuple):
    """A COCO category and how the mimic draws it."""

    id: int
    name: str
    supercategory: str
    shape: str
    colour: RGB
    texture: str


# Real COCO ids and names (non-contiguous, 1..90). Every colour and texture is shared by two or
# three categories; the (colour, texture) pair is unique, and with ``shapes: category`` the shape too.
CATEGORIES: tuple[CategoryLook, ...] = (
    CategoryLook(1, "person", "person", "figure", RED, "solid"),
    CategoryLook(3, "car", "vehicle", "bar", BLUE, "stripes"),
    CategoryLook(10, "traffic light", "outdoor", "lights", YELLOW, "solid"),
    CategoryLook(18, "dog", "animal", "triangle", PURPLE, "dots"),
    CategoryLook(25, "giraffe", "animal", "star", YELLOW, "checker"),
    CategoryLook(44, "bottle", "kitchen", "hexagon", GREEN, "stripes"),
    CategoryLook(53, "apple", "food", "disk", RED, "dots"),
    CategoryLook(62, "chair", "furniture", "ell", GREEN, "checker"),
    CategoryLook(77, "cell phone", "electronic", "square", PURPLE, "stripes"),
    CategoryLook(90, "toothbrush", "indoor", "cross", BLUE, "checker"),
)
MULTI_PART_SHAPES = ("figure", "lights")
SHAPES = tuple(c.shape for c in CATEGORIES)


def _ngon(n: int, radius: float = 1.0, phase: float = 0.0, centre: tuple[float, float] = (0.0, 0.0),
          stretch: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Vertices (n, 2) of a regular n-gon (or, stretched, an ellipse-like polygon) in unit coordinates."""
    a = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([centre[0] + stretch[0] * radius * np.cos(a), centre[1] + stretch[1] * radius * np.sin(a)], 1)


def _star(points: int, outer: float, inner: float) -> np.ndarray:
    a = -math.pi / 2 + math.pi * np.arange(2 * points) / points
    r = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


_SHAPES: dict[str, Callable[[], tuple[np.ndarray, ...]]] = {  # unit shapes, areas 1.7..2.6
    "disk": lambda: (_ngon(20, 0.9),),
    "square": lambda: (_ngon(4, 1.13, math.pi / 4),),
    "triangle": lambda: (_ngon(3, 1.25, -math.pi / 2),),
    "star": lambda: (_star(5, 1.2, 0.5),),
    "hexagon": lambda: (_ngon(6, 0.95),),
    "bar": lambda: (np.array([[-1.1, -0.55], [1.1, -0.55], [1.1, 0.55], [-1.1, 0.55]]),),
    "cross": lambda: (np.array([[-0.35, -1], [0.35, -1], [0.35, -0.35], [1, -0.35], [1, 0.35], [0.35, 0.35],
                                [0.35, 1], [-0.35, 1], [-0.35, 0.35], [-1, 0.35], [-1, -0.35], [-0.35, -0.35]]),),
    "ell": lambda: (np.array([[-0.8, -1], [-0.2, -1], [-0.2, 0.4], [0.9, 0.4], [0.9, 1], [-0.8, 1]]),),
    # multi-part objects: body + head, and three lamps
    "figure": lambda: (_ngon(16, 1.0, 0, (0, 0.25), (0.55, 0.75)), _ngon(12, 0.32, 0, (0, -0.9))),
    "lights": lambda: tuple(_ngon(12, 0.42, 0, (0, y)) for y in (-0.95, 0.0, 0.95)),
}


@functools.cache
def shape_parts(shape: str) -> tuple[np.ndarray, ...]:
    """Polygon parts (each (n, 2), x and y in [-1.3, 1.3]) of a named unit shape."""
    return _SHAPES[shape]()


# --------------------------------------------------------------------------- drawing


class _Object(NamedTuple):
    """An annotated object of a synthetic scene."""

    category_id: int
    segmentation: list | dict  # polygons, or RLE for crowds and some non-crowd objects
    mask: np.ndarray  # (h, w) uint8, exactly what the segmentation decodes to
    iscrowd: int


def _place(shape: str, centre: tuple[float, float], radius: float, angle: float,
           height: int, width: int) -> list[list[float]]:
    """The unit shape rotated, scaled and moved into the image: COCO polygons [x1, y1, x2, y2, ...]."""
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    polygons = []
    for part in shape_parts(shape):
        xy = part @ rot.T * radius + np.asarray(centre)
        xy = np.round(np.clip(xy, 0, [width, height]), 2)  # real COCO polygons stay inside the image
        x, y = xy[:, 0], xy[:, 1]
        if abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2 >= 1.0:  # drop parts cut off by the border
            polygons.append(xy.ravel().tolist())
    return polygons


def _rasterize(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """pycocotools' own rasterisation, so that drawn pixels and annotation masks agree exactly."""
    if not polygons:
        return np.zeros((height, width), np.uint8)
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width)))


def _texture(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Pattern in {0, 1} over object coordinates (u, v), which are 1 at the object's radius."""
    if kind == "stripes":
        return np.floor(u * 2.5) % 2
    if kind == "checker":
        return (np.floor(u * 2) + np.floor(v * 2)) % 2
    if kind == "dots":
        return (((u * 2) % 1 - 0.5) ** 2 + ((v * 2) % 1 - 0.5) ** 2 < 0.09).astype(np.float32)
    return np.zeros_like(u)


def _paint_object(canvas: np.ndarray, mask: np.ndarray, look: CategoryLook, rng: np.random.Generator,
                  grid: tuple[np.ndarray, np.ndarray], pose: tuple[float, float, float, float],
                  jitter: float) -> None:
    """Fill ``mask`` on ``canvas`` (H, W, 3) with the category's colour and texture, in place."""
    (x, y), (cx, cy, radius, angle) = grid, pose
    c, s = math.cos(angle), math.sin(angle)
    u, v = ((x - cx) * c + (y - cy) * s) / radius, (-(x - cx) * s + (y - cy) * c) / radius
    colour = np.asarray(look.colour, np.float32) * rng.normal(1.0, jitter, 3).astype(np.float32)
    dark = colour * 0.35 + 15.0
    pattern = _texture(look.texture, u, v)[..., None]
    shade = (1.0 + 0.15 * u)[..., None]  # light from one side
    fill = (colour * (1 - pattern) + dark * pattern) * shade
    sel = mask.astype(bool)
    canvas[sel] = fill[sel]


def _background(rng: np.random.Generator, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Cluttered scene (H, W, 3) float: smooth colour field, texture, blobs in object colours, lines."""
    x, y = grid
    h, w = x.shape
    coarse = rng.uniform(40, 200, (3, 4, 3)).astype(np.uint8)  # low-frequency colour field
    canvas = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC), np.float32).copy()
    angle, period = rng.uniform(0, math.pi), rng.uniform(3, 10)
    phase = (x * math.cos(angle) + y * math.sin(angle)) * 2 * math.pi / period
    canvas += (rng.uniform(0, 25) * np.sin(phase))[..., None]  # faint stripes
    side = max(h, w)
    for _ in range(rng.integers(2, 6)):  # blobs; most in object colours, so colour alone misleads
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(0.04, 0.2, 2) * side
        colour = (np.asarray(PALETTE[rng.integers(len(PALETTE))], np.float32) if rng.random() < 0.7
                  else rng.uniform(0, 255, 3).astype(np.float32))
        canvas[((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1] = colour
    for _ in range(rng.integers(0, 3)):  # poles, wires, edges
        angle, offset = rng.uniform(0, math.pi), rng.uniform(-0.5, 0.5) * side
        dist = (x - w / 2) * math.sin(angle) - (y - h / 2) * math.cos(angle) - offset
        canvas[np.abs(dist) <= rng.uniform(0.5, 0.03 * side + 0.5)] = rng.uniform(0, 255, 3)
    return canvas


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y), each (h, w) float32."""
    ys, xs = np.arange(h, dtype=np.float32) + 0.5, np.arange(w, dtype=np.float32) + 0.5
    x, y = np.meshgrid(xs, ys)
    return x, y


def _draw(canvas: np.ndarray, grid: tuple[np.ndarray, np.ndarray], rng: np.random.Generator,
          look: CategoryLook, centre: tuple[float, float], radius: float,
          jitter: float, shape: str | None = None) -> tuple[list[list[float]], np.ndarray]:
    """Draw one object of ``look`` with outline ``shape`` (default: the category's own); return
    its polygons and mask (empty if it fell off the image)."""
    h, w = canvas.shape[:2]
    angle = rng.uniform(-math.pi / 6, math.pi / 6)  # mostly upright, like real objects
    polygons = _place(shape or look.shape, centre, radius, angle, h, w)
    mask = _rasterize(polygons, h, w)
    _paint_object(canvas, mask, look, rng, grid, (*centre, radius, angle), jitter)
    return polygons, mask


def _shape(rng: np.random.Generator, cfg: CocoSynthConfig, look: CategoryLook) -> str:
    """An object's outline: the category's own, or with ``shapes: random`` any category's."""
    return look.shape if cfg.shapes == "category" else SHAPES[rng.integers(len(SHAPES))]


def _draw_crowd(canvas: np.ndarray, grid: tuple[np.ndarray, np.ndarray], rng: np.random.Generator,
                look: CategoryLook, cfg: CocoSynthConfig) -> _Object | None:
    """A tight group of small same-category objects, annotated as one iscrowd=1 uncompressed RLE."""
    h, w = canvas.shape[:2]
    small = min(h, w)
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
    mask, shape = np.zeros((h, w), np.uint8), _shape(rng, cfg, look)
    for _ in range(rng.integers(5, 10)):
        centre = (cx + rng.normal(0, 0.08) * small, cy + rng.normal(0, 0.08) * small)
        mask |= _draw(canvas, grid, rng, look, centre, rng.uniform(0.035, 0.06) * small, cfg.colour_jitter,
                      shape)[1]
    if not mask.any():
        return None
    return _Object(look.id, uncompressed_rle(mask), mask, 1)


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE of a (h, w) {0, 1} mask: column-major run lengths, starting with zeros."""
    flat = mask.ravel(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat[0]:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def _compressed_rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


class _ScenePlan(NamedTuple):
    """Per-image choices that guarantee each split exercises every annotation kind."""

    annotated: bool
    force_rare: bool  # crowd + compressed RLE + multi-part dominant, for small test datasets


def _render_scene(rng: np.random.Generator, cfg: CocoSynthConfig,
                 plan: _ScenePlan) -> tuple[np.ndarray, list[_Object]]:
    """One synthetic image: uint8 (H, W, 3) and its annotated objects (dominant first)."""
    long_side, short_side = cfg.image_size, int(round(cfg.image_size * rng.uniform(0.75, 1.0)))
    h, w = (short_side, long_side) if rng.random() < 0.6 else (long_side, short_side)
    small, grid = min(h, w), _grid(h, w)
    canvas = _background(rng, grid)
    for _ in range(cfg.distractors):  # unannotated, so a model can be misled by them
        look = CATEGORIES[rng.integers(len(CATEGORIES))]
        centre = (rng.uniform(0, w), rng.uniform(0, h))
        _draw(canvas, grid, rng, look, centre, rng.uniform(*cfg.distractor_scale) * small, cfg.colour_jitter,
              _shape(rng, cfg, look))
    objects: list[_Object] = []
    if plan.annotated:
        if plan.force_rare or rng.random() < cfg.crowd_fraction:
            look = CATEGORIES[rng.integers(len(CATEGORIES))]
            crowd = _draw_crowd(canvas, grid, rng, look, cfg)
            objects += [crowd] if crowd else []
        objects = _draw_objects(canvas, grid, rng, cfg, plan) + objects
    canvas = canvas * rng.uniform(0.7, 1.2) + rng.uniform(-20, 20)  # exposure
    canvas += rng.normal(0, cfg.noise_std, canvas.shape)
    return np.clip(canvas, 0, 255).astype(np.uint8), objects


def _draw_objects(canvas: np.ndarray, grid: tuple[np.ndarray, np.ndarray], rng: np.random.Generator,
                  cfg: CocoSynthConfig, plan: _ScenePlan) -> list[_Object]:
    """The dominant object (large; near the centre or anywhere) and smaller secondary ones, drawn on top."""
    h, w = canvas.shape[:2]
    small = min(h, w)
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    n = max(n, 2) if plan.force_rare else n
    dominant = CATEGORIES[rng.integers(len(CATEGORIES))]
    dominant_shape = None  # its category's or, with shapes: random, drawn below
    if plan.force_rare:
        dominant_shape = MULTI_PART_SHAPES[rng.integers(len(MULTI_PART_SHAPES))]
        if cfg.shapes == "category":
            dominant = next(c for c in CATEGORIES if c.shape == dominant_shape)
    others = [c for c in CATEGORIES if c.id != dominant.id]
    secondary = [others[i] for i in rng.choice(len(others), n - 1, replace=False)]  # one object per category
    r_dom = rng.uniform(*cfg.dominant_scale) * small
    if cfg.dominant_position == "centre":
        poses = [((rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * h), r_dom)]
    else:  # anywhere its centre stays half a radius inside the image (a border may cut a little of it off)
        poses = [((rng.uniform(0.5 * r_dom, w - 0.5 * r_dom), rng.uniform(0.5 * r_dom, h - 0.5 * r_dom)), r_dom)]
    for _ in secondary:  # area <= ~45% of the dominant's, so the label is never in doubt
        r = rng.uniform(0.3, 0.55) * r_dom
        poses.append(((rng.uniform(0.6 * r, w - 0.6 * r), rng.uniform(0.6 * r, h - 0.6 * r)), r))
    objects = []
    for k, (look, (centre, radius)) in enumerate(zip([dominant, *secondary], poses, strict=True)):
        shape = dominant_shape if k == 0 and dominant_shape else _shape(rng, cfg, look)
        polygons, mask = _draw(canvas, grid, rng, look, centre, radius, cfg.colour_jitter, shape)
        if not mask.any():
            continue
        as_rle = (plan.force_rare and k == n - 1) or (k > 0 and rng.random() < cfg.rle_fraction)
        objects.append(_Object(look.id, _compressed_rle(mask) if as_rle else polygons, mask, 0))
    return objects


# --------------------------------------------------------------------------- writing the mimic


def _annotation(obj: _Object, image_id: int, ann_id: int) -> dict:
    """A COCO annotation dict, keys in the real files' order; area and bbox from pycocotools."""
    rle = mask_utils.encode(np.asfortranarray(obj.mask))
    return {
        "segmentation": obj.segmentation,
        "area": float(mask_utils.area(rle)),
        "iscrowd": obj.iscrowd,
        "image_id": image_id,
        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
        "category_id": obj.category_id,
        "id": ann_id,
    }


def _image_entry(folder: str, image_id: int, height: int, width: int) -> dict:
    file_name = f"{image_id:012d}.jpg"
    captured = datetime.datetime(2013, 11, 14) + datetime.timedelta(seconds=image_id * 37 % (365 * 86400))
    return {
        "license": 1 + image_id % 3,
        "file_name": file_name,
        "coco_url": f"http://images.cocodataset.org/{folder}/{file_name}",
        "height": height,
        "width": width,
        "date_captured": captured.strftime("%Y-%m-%d %H:%M:%S"),
        "flickr_url": f"http://synthetic.invalid/{file_name}",
        "id": image_id,
    }


def _plans(rng: np.random.Generator, n: int, empty_fraction: float) -> list[_ScenePlan]:
    """Which images have no annotations (at least one) and which one carries the rare kinds."""
    empty = set(rng.choice(n, max(1, round(n * empty_fraction)), replace=False).tolist())
    rare = min(set(range(n)) - empty)
    return [_ScenePlan(i not in empty, i == rare) for i in range(n)]


def _write_split(out_dir: Path, folder: str, image_ids: list[int], cfg: CocoSynthConfig,
                 seed: int, first_ann_id: int) -> int:
    """Write ``folder``'s JPEGs and ``instances_<folder>.json``; return the next free annotation id."""
    (out_dir / folder).mkdir(parents=True, exist_ok=True)
    split_key = 0 if folder == "train2017" else 1
    plans = _plans(np.random.default_rng([seed, MAX_COCO_ID + split_key]), len(image_ids), cfg.empty_fraction)
    images, annotations, ann_id = [], [], first_ann_id
    for image_id, plan in progress(zip(image_ids, plans, strict=True), desc=f"synthetic coco {folder}",
                                   total=len(image_ids), unit="img"):
        pixels, objects = _render_scene(np.random.default_rng([seed, image_id]), cfg, plan)
        Image.fromarray(pixels, "RGB").save(out_dir / folder / f"{image_id:012d}.jpg", "JPEG",
                                            quality=cfg.jpeg_quality)
        images.append(_image_entry(folder, image_id, *pixels.shape[:2]))
        for obj in objects:
            annotations.append(_annotation(obj, image_id, ann_id + (CROWD_ID_OFFSET if obj.iscrowd else 0)))
            ann_id += 1
    dataset = {
        "info": {"description": "attnrobust synthetic mimic of COCO 2017", "url": "", "version": "1.0",
                 "year": 2017, "contributor": "attnrobust", "date_created": "2017/09/01"},
        "licenses": [{"url": "http://creativecommons.org/licenses/by/2.0/", "id": i, "name": "Attribution License"}
                     for i in (1, 2, 3)],
        "images": images,
        "annotations": annotations,
        "categories": [{"supercategory": c.supercategory, "id": c.id, "name": c.name} for c in CATEGORIES],
    }
    ann_dir = out_dir / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    (ann_dir / f"instances_{folder}.json").write_text(json.dumps(dataset, separators=(",", ":")))
    return ann_id


def generate_coco(out_dir: Path, cfg: CocoSynthConfig, seed: int) -> None:
    """Write a synthetic COCO 2017 (train2017, val2017, annotations/) into ``out_dir``.

    Deterministic: the same ``cfg`` and ``seed`` give byte-identical files. Image ids are random
    and distinct (like COCO's), and each image is drawn from its own random stream.
    """
    out_dir = Path(out_dir)
    ids = np.random.default_rng(seed).choice(MAX_COCO_ID, cfg.train_images + cfg.val_images, replace=False) + 1
    train_ids, val_ids = sorted(ids[:cfg.train_images].tolist()), sorted(ids[cfg.train_images:].tolist())
    next_id = _write_split(out_dir, "train2017", train_ids, cfg, seed, first_ann_id=1)
    _write_split(out_dir, "val2017", val_ids, cfg, seed, first_ann_id=next_id)


