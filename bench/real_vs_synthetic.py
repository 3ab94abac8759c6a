"""How the synthetic mimics differ from the real datasets, measured on the prepared data.

    python bench/real_vs_synthetic.py --synthetic data/prepared --real <real run>/data/prepared

Reads ``<dir>/<dataset>/`` (masks@<dataset>'s output: images, foreground masks, labels) for gtsrb
and coco on both sides and prints one markdown table per dataset: sizes, class balance, the
foreground mask's share of the image, brightness and contrast, sharpness (variance of the
Laplacian: motion blur lowers it) and how far the foreground's colour stands out from the
background's. Every number is computed here from the files; none is typed in.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from attnrobust.data.prepared import read_meta, read_split  # noqa: E402


def _laplacian_var(gray: np.ndarray) -> np.ndarray:
    """Per image, the variance of the 4-neighbour Laplacian (0..255 grey levels)."""
    lap = (-4 * gray[:, 1:-1, 1:-1] + gray[:, :-2, 1:-1] + gray[:, 2:, 1:-1] + gray[:, 1:-1, :-2]
           + gray[:, 1:-1, 2:])
    return lap.reshape(len(gray), -1).var(axis=1)


def describe(prepared: Path) -> dict[str, str]:
    """The rows of one side's table for one prepared dataset."""
    meta = read_meta(prepared)
    train, test = read_split(prepared, "train"), read_split(prepared, "test")
    images = np.concatenate([train.images, test.images]).astype(np.float32)
    masks = np.concatenate([train.masks, test.masks]).astype(bool)
    gray = images.mean(axis=1)
    area = masks.reshape(len(masks), -1).mean(axis=1)
    fg = np.array([im[:, m].mean(axis=1) if m.any() else np.full(3, np.nan) for im, m in zip(images, masks)])
    bg = np.array([im[:, ~m].mean(axis=1) if (~m).any() else np.full(3, np.nan) for im, m in zip(images, masks)])
    contrast = np.linalg.norm(fg - bg, axis=1)
    counts = np.bincount(train.labels, minlength=len(meta["classes"]))
    used = counts[counts > 0]
    q = lambda v: f"{np.nanmean(v):.2f} (10-90%: {np.nanpercentile(v, 10):.2f}-{np.nanpercentile(v, 90):.2f})"  # noqa: E731
    return {
        "images train / test": f"{len(train.labels)} / {len(test.labels)}",
        "classes in train (of listed)": f"{len(used)} of {len(meta['classes'])}",
        "train images per class, min-max": f"{used.min()}-{used.max()}",
        "test classes absent from train": str(len(set(test.labels.tolist()) - set(np.flatnonzero(counts).tolist()))),
        "test images of a class train lacks": f"{(counts[test.labels] == 0).mean():.1%}",
        "prepared side, px": str(meta["image_size"]),
        "foreground share of the image": q(area),
        "images with no foreground": f"{(area == 0).mean():.1%}",
        "brightness (mean grey, 0-255)": q(gray.reshape(len(gray), -1).mean(axis=1)),
        "contrast (grey sd)": q(gray.reshape(len(gray), -1).std(axis=1)),
        "sharpness (Laplacian variance)": q(_laplacian_var(gray)),
        "foreground vs background colour distance": q(contrast),
        "skipped at preparation": str(len(meta.get("skipped", []))),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--synthetic", type=Path, required=True, help="dir of prepared datasets from the synthetic data")
    ap.add_argument("--real", type=Path, required=True, help="dir of prepared datasets from the real copies")
    args = ap.parse_args(argv)
    for dataset in ("gtsrb", "coco"):
        synth, real = describe(args.synthetic / dataset), describe(args.real / dataset)
        print(f"\n| {dataset} | synthetic | real |\n|---|---|---|")
        for key in synth:
            print(f"| {key} | {synth[key]} | {real[key]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
