"""The synthetic GTSRB: a deterministic mimic written in the real on-disk layout (fetch@gtsrb).

The layout is the parser's (:mod:`attnrobust.data.gtsrb`), which reads this mimic and the real
archives alike. The synthetic signs put class identity in shape, rim/fill colour and a small
inner glyph (some classes differ only in the glyph), on cluttered backgrounds with sign-coloured
distractors, so that a model can profit from looking at the foreground.
"""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageFilter

from attnrobust.data.layout import GTSRB_CSV_HEADER, GTSRB_NUM_CLASSES
from attnrobust.runtime import progress

NUM_CLASSES = GTSRB_NUM_CLASSES
CSV_HEADER = GTSRB_CSV_HEADER
FRAMES_PER_TRACK = 30  # real GTSRB names training images TTTTT_FFFFF with 30 frames per track
SUPERSAMPLE = 2  # render at 2x and box-filter down: cheap anti-aliasing


# --------------------------------------------------------------------------- synthetic config


@dataclass(frozen=True)
class GtsrbSynthConfig:
    """``data.gtsrb``: where masks@gtsrb reads GTSRB, and the size of the synthetic mimic. Sizes
    are in pixels of the written images (sign + border)."""

    local_dir: str = "data/raw/gtsrb"  # fetch@gtsrb's output, or an existing copy in the official layout
    train_per_class: int = 40  # training images per class (43 classes)
    test_per_class: int = 10  # test images per class, shuffled into one Final_Test folder
    min_size: int = 24  # smallest image side, px (real GTSRB: 15..250)
    max_size: int = 64  # largest image side, px

    def __post_init__(self) -> None:
        if self.train_per_class < 1:
            raise ValueError(f"train_per_class must be >= 1, got {self.train_per_class}")
        if self.test_per_class < 1:
            raise ValueError(f"test_per_class must be >= 1, got {self.test_per_class}")
        if not 20 <= self.min_size <= self.max_size <= 256:
            raise ValueError(f"need 20 <= min_size <= max_size <= 256, got {self.min_size}..{self.max_size}")


# --------------------------------------------------------------------------- sign designs

RGB = tuple[float, float, float]
RED: RGB = (200.0, 30.0, 35.0)
WHITE: RGB = (235.0, 235.0, 230.0)
BLUE: RGB = (30.0, 75.0, 175.0)
YELLOW: RGB = (240.0, 195.0, 30.0)
BLACK: RGB = (25.0, 25.0, 25.0)
GREY: RGB = (120.0, 120.0, 120.0)
SIGN_COLOURS = (RED, WHITE, BLUE, YELLOW, BLACK)

# colour scheme -> (rim, fill, glyph)
SCHEMES: dict[str, tuple[RGB, RGB, RGB]] = {
    "red_rim": (RED, WHITE, BLACK),
    "red_fill": (WHITE, RED, WHITE),
    "grey": (GREY, WHITE, GREY),
    "blue": (WHITE, BLUE, WHITE),
    "yellow": (WHITE, YELLOW, BLACK),
}

# (shape, scheme, glyphs): one class per glyph, in this order -> class ids 0..42
FAMILIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("circle", "red_rim", ("hbar", "vbar", "diag", "antidiag", "dot1", "dot2", "dot3", "cross",
                           "ring", "arrow_up")),
    ("circle", "red_fill", ("hbar",)),
    ("circle", "grey", ("diag", "antidiag", "dot2")),
    ("circle", "blue", ("arrow_up", "arrow_down", "arrow_left", "arrow_right", "arrow_upright",
                        "dot1", "cross", "ring")),
    ("triangle", "red_rim", ("none", "vbar", "hbar", "diag", "antidiag", "dot1", "dot2", "dot3",
                             "cross", "ring", "arrow_left", "arrow_right")),
    ("inv_triangle", "red_rim", ("none", "dot1")),
    ("octagon", "red_fill", ("none", "hbar")),
    ("diamond", "yellow", ("none", "dot1")),
    ("square", "blue", ("arrow_up", "dot1", "hbar")),
)

_T8 = math.tan(math.pi / 8)
POLYGONS: dict[str, tuple[tuple[float, float], ...]] = {  # vertices in the [-1, 1]^2 sign box
    "triangle": ((0.0, -1.0), (1.0, 1.0), (-1.0, 1.0)),
    "inv_triangle": ((0.0, 1.0), (-1.0, -1.0), (1.0, -1.0)),
    "diamond": ((0.0, -1.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0)),
    "square": ((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)),
    "octagon": ((-_T8, -1.0), (_T8, -1.0), (1.0, -_T8), (1.0, _T8), (_T8, 1.0), (-_T8, 1.0),
                (-1.0, _T8), (-1.0, -_T8)),
}
RIM_INNER = 0.7  # the fill starts at 70% of the sign's gauge: a 30% rim


class SignDesign(NamedTuple):
    """What makes a class: outline shape, rim/fill/glyph colours and the inner glyph."""

    shape: str
    rim: RGB
    fill: RGB
    glyph_colour: RGB
    glyph: str


@functools.cache
def sign_designs() -> tuple[SignDesign, ...]:
    """The 43 class designs, indexed by ClassId (fixed, independent of the seed)."""
    designs = tuple(SignDesign(shape, *SCHEMES[scheme], glyph)
                    for shape, scheme, glyphs in FAMILIES for glyph in glyphs)
    assert len(designs) == NUM_CLASSES
    return designs


# --------------------------------------------------------------------------- vectorised drawing


@functools.cache
def _incircle(shape: str) -> tuple[float, float, float]:
    """Centre (u, v) and radius of the shape's inscribed circle in the [-1, 1]^2 box."""
    if shape not in POLYGONS:
        return 0.0, 0.0, 1.0
    pts = np.asarray(POLYGONS[shape])
    sides = np.linalg.norm(np.roll(pts, -1, axis=0) - pts, axis=1)  # sides[i]: vertex i to i+1
    area = 0.5 * abs(np.sum(pts[:, 0] * np.roll(pts[:, 1], -1) - np.roll(pts[:, 0], -1) * pts[:, 1]))
    if len(pts) == 3:  # triangle incentre: vertices weighted by the length of the opposite side
        opposite = np.roll(sides, -1)  # vertex i faces the side from i+1 to i+2
        cu, cv = (opposite[:, None] * pts).sum(0) / sides.sum()
        return float(cu), float(cv), float(2 * area / sides.sum())
    return 0.0, 0.0, float(2 * area / sides.sum())  # centrally symmetric tangential polygons


def _gauge(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Gauge about the incentre: 1 on the outline, scaling linearly to 0 at the incentre.

    ``gauge <= k`` is the outline shrunk by ``k`` about the incentre, which gives a rim of
    constant width for every shape.
    """
    cu, cv, _ = _incircle(shape)
    du, dv = u - cu, v - cv
    if shape == "circle":
        return np.sqrt(du * du + dv * dv)
    pts = np.asarray(POLYGONS[shape]) - (cu, cv)
    edges = np.roll(pts, -1, axis=0) - pts
    normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1)
    normals *= np.sign(np.sum(normals * pts, axis=1, keepdims=True))  # point outwards
    offsets = np.sum(normals * pts, axis=1)
    proj = normals[:, 0, None, None] * du + normals[:, 1, None, None] * dv  # (k, H, W)
    return np.max(proj / offsets[:, None, None], axis=0)


def _bar(u: np.ndarray, v: np.ndarray, angle: float, half_len: float, half_width: float) -> np.ndarray:
    """A bar through the origin at ``angle`` (radians, 0 = horizontal)."""
    c, s = math.cos(angle), math.sin(angle)
    along, across = u * c + v * s, -u * s + v * c
    return (np.abs(along) <= half_len) & (np.abs(across) <= half_width)


def _dots(u: np.ndarray, v: np.ndarray, n: int) -> np.ndarray:
    """``n`` dots in a horizontal row."""
    centres = np.linspace(-0.45, 0.45, n) if n > 1 else np.zeros(1)
    return np.any([(u - c) ** 2 + v**2 <= 0.2**2 for c in centres], axis=0)


def _arrow(u: np.ndarray, v: np.ndarray, angle: float) -> np.ndarray:
    """An arrow pointing at ``angle`` (radians, 0 = right, pi/2 = down)."""
    c, s = math.cos(angle), math.sin(angle)
    along, across = u * c + v * s, -u * s + v * c
    shaft = (along >= -0.6) & (along <= 0.1) & (np.abs(across) <= 0.13)
    head = (along >= 0.0) & (np.abs(across) <= (0.65 - along) * 0.95)
    return shaft | head


GLYPHS = {
    "none": lambda u, v: np.zeros(u.shape, bool),
    "hbar": lambda u, v: _bar(u, v, 0.0, 0.6, 0.15),
    "vbar": lambda u, v: _bar(u, v, math.pi / 2, 0.6, 0.15),
    "diag": lambda u, v: _bar(u, v, -math.pi / 4, 0.65, 0.14),
    "antidiag": lambda u, v: _bar(u, v, math.pi / 4, 0.65, 0.14),
    "cross": lambda u, v: _bar(u, v, 0.0, 0.6, 0.13) | _bar(u, v, math.pi / 2, 0.6, 0.13),
    "dot1": lambda u, v: _dots(u, v, 1),
    "dot2": lambda u, v: _dots(u, v, 2),
    "dot3": lambda u, v: _dots(u, v, 3),
    "ring": lambda u, v: np.abs(np.sqrt(u * u + v * v) - 0.42) <= 0.14,
    "arrow_up": lambda u, v: _arrow(u, v, -math.pi / 2),
    "arrow_down": lambda u, v: _arrow(u, v, math.pi / 2),
    "arrow_left": lambda u, v: _arrow(u, v, math.pi),
    "arrow_right": lambda u, v: _arrow(u, v, 0.0),
    "arrow_upright": lambda u, v: _arrow(u, v, -math.pi / 4),
}


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Supersampled pixel-centre coordinates (x, y) in output-pixel units, each (h*S, w*S)."""
    ys = (np.arange(h * SUPERSAMPLE, dtype=np.float32) + 0.5) / SUPERSAMPLE
    xs = (np.arange(w * SUPERSAMPLE, dtype=np.float32) + 0.5) / SUPERSAMPLE
    return np.meshgrid(xs, ys)


def _paint(canvas: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
    """Set ``canvas`` (H, W, 3) to ``colour`` where ``mask`` (H, W) is true, in place."""
    canvas[mask] = colour


def _draw_sign(canvas: np.ndarray, x: np.ndarray, y: np.ndarray, box: tuple[float, float, float, float],
               design: SignDesign, colours: dict[str, np.ndarray]) -> None:
    """Draw ``design`` filling ``box`` = (x1, y1, x2, y2) onto the supersampled ``canvas``."""
    x1, y1, x2, y2 = box
    u = (x - (x1 + x2) / 2) / ((x2 - x1) / 2)
    v = (y - (y1 + y2) / 2) / ((y2 - y1) / 2)
    gauge = _gauge(design.shape, u, v)
    _paint(canvas, gauge <= 1.0, colours["rim"])
    _paint(canvas, gauge <= RIM_INNER, colours["fill"])
    if design.glyph != "none":
        cu, cv, radius = _incircle(design.shape)
        scale = radius * RIM_INNER
        glyph = GLYPHS[design.glyph]((u - cu) / scale, (v - cv) / scale)
        _paint(canvas, glyph & (gauge <= RIM_INNER), colours["glyph"])


# --------------------------------------------------------------------------- synthetic images


def _jitter_colour(rng: np.random.Generator, colour: RGB, amount: float) -> np.ndarray:
    """``colour`` with each channel scaled by ~N(1, amount): no two signs are painted alike."""
    return np.asarray(colour, np.float32) * rng.normal(1.0, amount, 3).astype(np.float32)


def _sign_colours(rng: np.random.Generator, design: SignDesign, amount: float,
                  fade: float = 0.0) -> dict[str, np.ndarray]:
    """Jittered rim/fill/glyph colours, blended towards grey by ``fade`` (weathered paint)."""
    return {k: (1 - fade) * _jitter_colour(rng, c, amount) + fade * 128.0 for k, c in
            (("rim", design.rim), ("fill", design.fill), ("glyph", design.glyph_colour))}


def _background(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cluttered scene (H, W, 3) float: smooth colour field, blobs, lines and partial sign shapes."""
    h, w = x.shape
    coarse = rng.uniform(40, 200, (3, 4, 3)).astype(np.uint8)  # low-frequency colour field
    canvas = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC), np.float32).copy()
    canvas += rng.normal(0, 18, (h, w, 1)).astype(np.float32)  # luminance texture
    side = max(x.max(), y.max())
    for _ in range(rng.integers(2, 6)):  # blobs, half of them in sign colours
        cx, cy = rng.uniform(0, x.max()), rng.uniform(0, y.max())
        rx, ry = rng.uniform(0.05, 0.3, 2) * side
        colour = _clutter_colour(rng)
        _paint(canvas, ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1, colour)
    for _ in range(rng.integers(1, 4)):  # poles, wires, edges
        angle, offset = rng.uniform(0, math.pi), rng.uniform(-0.5, 0.5) * side
        dist = (x - x.max() / 2) * math.sin(angle) - (y - y.max() / 2) * math.cos(angle) - offset
        _paint(canvas, np.abs(dist) <= rng.uniform(0.5, 0.06 * side + 0.5), _clutter_colour(rng))
    for _ in range(rng.integers(0, 4)):  # partial distractor signs straddling the image edge
        _draw_distractor(rng, canvas, x, y)
    return canvas


def _clutter_colour(rng: np.random.Generator) -> np.ndarray:
    """Half the time a sign colour (so colour alone never finds the sign), else any colour."""
    if rng.random() < 0.5:
        return _jitter_colour(rng, SIGN_COLOURS[rng.integers(len(SIGN_COLOURS))], 0.1)
    return rng.uniform(0, 255, 3).astype(np.float32)


def _draw_distractor(rng: np.random.Generator, canvas: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
    """A random class's sign, centred near an image edge so that only part of it shows."""
    design = sign_designs()[rng.integers(NUM_CLASSES)]
    w, h = float(x.max()), float(y.max())
    size = rng.uniform(0.4, 0.9) * min(w, h)
    edge = rng.integers(4)
    cx = [0.0, w, rng.uniform(0, w), rng.uniform(0, w)][edge]
    cy = [rng.uniform(0, h), rng.uniform(0, h), 0.0, h][edge]
    box = (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)
    _draw_sign(canvas, x, y, box, design, _sign_colours(rng, design, 0.08))


def _layout(rng: np.random.Generator, cfg: GtsrbSynthConfig) -> tuple[int, int, tuple[int, int, int, int]]:
    """Image (width, height) and sign ROI (x1, y1, x2, y2), half-open.

    The border is at least 10% of the sign and at least 5 px on every side (as in GTSRB); a little
    extra border on one side or the other jitters the sign's position.
    """
    width = int(rng.integers(cfg.min_size, cfg.max_size + 1))
    height = int(np.clip(width + rng.integers(-2, 3), cfg.min_size, cfg.max_size))
    border = max(5, math.ceil(max(width, height) / 12))  # sign <= side/1.2, so border >= 10% sign
    roi = []
    for side in (width, height):
        slack = int(rng.integers(0, max(1, side // 10) + 1))  # extra border, split at random
        before = border + int(rng.integers(0, slack + 1))
        roi.append((before, side - border - (slack - (before - border))))
    (x1, x2), (y1, y2) = roi
    return width, height, (x1, y1, x2, y2)


def render_sign_image(design: SignDesign, rng: np.random.Generator,
                      cfg: GtsrbSynthConfig) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """One synthetic GTSRB image: uint8 (H, W, 3) and the sign ROI (x1, y1, x2, y2), half-open."""
    width, height, roi = _layout(rng, cfg)
    x, y = _grid(height, width)
    canvas = _background(rng, x, y)
    colours = _sign_colours(rng, design, 0.06, fade=rng.uniform(0.0, 0.35))
    _draw_sign(canvas, x, y, tuple(float(c) for c in roi), design, colours)
    # box-filter the supersampled canvas down: (H*S, W*S, 3) -> (H, W, 3)
    canvas = canvas.reshape(height, SUPERSAMPLE, width, SUPERSAMPLE, 3).mean(axis=(1, 3))
    canvas = canvas * rng.uniform(0.5, 1.3) + rng.uniform(-20, 20)  # exposure
    canvas += rng.normal(0, rng.uniform(2, 10), canvas.shape)  # sensor noise
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")
    image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, 1.1))))  # focus / motion
    return np.asarray(image), roi


# --------------------------------------------------------------------------- writing the mimic


def _image_rng(seed: int, split: str, class_id: int, index: int) -> np.random.Generator:
    """Independent stream per image: adding images never changes the existing ones."""
    return np.random.default_rng([seed, {"train": 0, "test": 1}[split], class_id, index])


def _write_image(path: Path, image: np.ndarray) -> None:
    """Save uint8 (H, W, 3) as binary P6 PPM (PIL's output is byte-for-byte reproducible)."""
    Image.fromarray(image, "RGB").save(path, format="PPM")  # RGB -> binary P6


def _write_gt_csv(path: Path, rows: list[list], with_class: bool = True) -> None:
    """A ';'-separated GTSRB ground-truth CSV; ``with_class=False`` drops ClassId (the .test.csv)."""
    header = CSV_HEADER if with_class else CSV_HEADER[:-1]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter=";")
        writer.writerow(header)
        writer.writerows(row if with_class else row[:-1] for row in rows)


def _write_train(out_dir: Path, cfg: GtsrbSynthConfig, seed: int) -> None:
    """All 43 ``GTSRB/Training/000NN`` folders with images and ``GT-000NN.csv``."""
    for class_id, design in progress(enumerate(sign_designs()), desc="synthetic gtsrb train", total=NUM_CLASSES,
                                     unit="class"):
        folder = out_dir / "GTSRB" / "Training" / f"{class_id:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(cfg.train_per_class):
            image, roi = render_sign_image(design, _image_rng(seed, "train", class_id, i), cfg)
            name = f"{i // FRAMES_PER_TRACK:05d}_{i % FRAMES_PER_TRACK:05d}.ppm"
            _write_image(folder / name, image)
            rows.append([name, image.shape[1], image.shape[0], *roi, class_id])
        _write_gt_csv(folder / f"GT-{class_id:05d}.csv", rows)


def _write_test(out_dir: Path, cfg: GtsrbSynthConfig, seed: int) -> None:
    """``Final_Test/Images`` with classes shuffled, ``GT-final_test.test.csv`` and ``GT-final_test.csv``."""
    folder = out_dir / "GTSRB" / "Final_Test" / "Images"
    folder.mkdir(parents=True, exist_ok=True)
    items = [(c, i) for c in range(NUM_CLASSES) for i in range(cfg.test_per_class)]
    order = np.random.default_rng([seed, 2]).permutation(len(items))
    rows = []
    for k, j in progress(enumerate(order), desc="synthetic gtsrb test", total=len(order), unit="img"):
        class_id, i = items[j]
        image, roi = render_sign_image(sign_designs()[class_id], _image_rng(seed, "test", class_id, i), cfg)
        name = f"{k:05d}.ppm"
        _write_image(folder / name, image)
        rows.append([name, image.shape[1], image.shape[0], *roi, class_id])
    _write_gt_csv(folder / "GT-final_test.test.csv", rows, with_class=False)
    _write_gt_csv(out_dir / "GT-final_test.csv", rows)


def generate_gtsrb(out_dir: Path, cfg: GtsrbSynthConfig, seed: int) -> None:
    """Write a synthetic GTSRB into ``out_dir`` (torchvision's ``root/gtsrb``), byte-identical per seed."""
    out_dir = Path(out_dir)
    _write_train(out_dir, cfg, seed)
    _write_test(out_dir, cfg, seed)


