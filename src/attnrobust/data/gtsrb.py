"""GTSRB in its official on-disk layout: the parser masks@gtsrb runs on the real archives, a local
copy (``data.gtsrb.local_dir``) or the synthetic mimic (:mod:`attnrobust.data.synthetic.gtsrb`).

On-disk layout (``raw_dir`` plays torchvision's ``root/gtsrb``)::

    GTSRB/Training/00000..00042/TTTTT_FFFFF.ppm + GT-000NN.csv
    GTSRB/Final_Test/Images/NNNNN.ppm + GT-final_test.test.csv   (no ClassId)
    GT-final_test.csv                                            (with ClassId)

CSVs are ``;``-separated with header ``Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId``.
The ROI is the sign's box, read as half-open pixel ranges ``[X1, X2) x [Y1, Y2)`` (this makes the
real files' borders symmetric, e.g. ``30;30;5;5;25;25``); the foreground mask is that box, scaled
to the file when a copy's images were resized (Width/Height differ from the file's size).
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from attnrobust.data.layout import GTSRB_CSV_HEADER, GTSRB_NUM_CLASSES
from attnrobust.data.prepared import PreparedSplit
from attnrobust.errors import UserError
from attnrobust.runtime import progress

NUM_CLASSES = GTSRB_NUM_CLASSES
CSV_HEADER = GTSRB_CSV_HEADER


# --------------------------------------------------------------------------- parsing (real or synthetic)


class _Record(NamedTuple):
    """One image to prepare: path relative to ``raw_dir``, label, ROI (None: use the border rule)."""

    relpath: str
    label: int
    roi: tuple[int, int, int, int] | None
    size: tuple[int, int] | None = None  # (Width, Height) the CSV's ROI is given for


def _read_gt_csv(path: Path, need_class: bool) -> list[dict[str, str]]:
    """Rows of a GTSRB ground-truth CSV, checked for the columns we use."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f, delimiter=";", skipinitialspace=True)
        need = CSV_HEADER if need_class else CSV_HEADER[:-1]
        missing = [c for c in need if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: missing column(s) {', '.join(missing)}; expected a ';'-separated "
                            f"GTSRB CSV with header {';'.join(CSV_HEADER)}")
        return list(reader)


def _row_record(row: dict[str, str], relpath: str, label: int, path: Path) -> _Record:
    """A record whose ROI comes from the CSV ``row`` (read from ``path``)."""
    try:
        x1, y1, x2, y2 = (int(row[k]) for k in ("Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2"))
        size = (int(row["Width"]), int(row["Height"]))
    except ValueError as exc:
        raise UserError(f"{path}: bad ROI or size for {row['Filename']} ({exc}); re-extract the archive") from exc
    return _Record(relpath, label, (x1, y1, x2, y2), size)


def _class_label(value: str, path: Path, num_classes: int) -> int:
    """``ClassId`` as an int in ``0..num_classes-1``, or a UserError naming the CSV."""
    try:
        label = int(value)
    except ValueError:
        label = -1
    if not 0 <= label < num_classes:
        raise UserError(f"{path}: ClassId {value!r} is not in 0..{num_classes - 1}; re-extract the archive")
    return label


def _folder_records(raw_dir: Path, folder: Path, index: int, num_classes: int,
                    skipped: list[str]) -> list[_Record]:
    """Records of one training class folder, from its ``GT-*.csv`` or else from the folder listing;
    a listed file missing on disk is appended to ``skipped``."""
    images = sorted(p.name for p in folder.glob("*.ppm"))
    if not images:
        raise UserError(f"{folder}: class folder has no .ppm images; re-extract GTSRB-Training_fixed.zip "
                        f"(or regenerate the synthetic data) so that every class folder holds images")
    rel = folder.relative_to(raw_dir).as_posix()
    csvs = sorted(folder.glob("GT-*.csv"))
    if not csvs:
        warnings.warn(f"{folder}: no GT-*.csv; labels from the folder order, ROI from the 10%/5px border rule")
        return [_Record(f"{rel}/{name}", index, None) for name in images]
    records = []
    for row in _read_gt_csv(csvs[0], need_class=True):
        if not (folder / row["Filename"]).is_file():
            skipped.append(f"{rel}/{row['Filename']}: listed in {csvs[0].name} but missing on disk")
            continue
        label = _class_label(row["ClassId"], csvs[0], num_classes)
        records.append(_row_record(row, f"{rel}/{row['Filename']}", label, csvs[0]))
    return sorted(records)


def _train_records(raw_dir: Path, skipped: list[str]) -> tuple[list[_Record], list[str]]:
    """All training records (sorted by class folder, then file) and the class folder names."""
    root = raw_dir / "GTSRB" / "Training"
    if not root.is_dir():
        raise UserError(f"{root}: not found; extract GTSRB-Training_fixed.zip into {raw_dir} "
                        f"(or generate the synthetic GTSRB there)")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise UserError(f"{root}: no class folders 00000..00042; re-extract GTSRB-Training_fixed.zip")
    records = [r for i, f in enumerate(folders) for r in _folder_records(raw_dir, f, i, len(folders), skipped)]
    return records, [f.name for f in folders]


def _test_records(raw_dir: Path, num_classes: int, skipped: list[str]) -> list[_Record]:
    """Test records from ``GT-final_test.csv`` (which carries ClassId and ROI), sorted by file."""
    gt = raw_dir / "GT-final_test.csv"
    images = raw_dir / "GTSRB" / "Final_Test" / "Images"
    if not gt.is_file():
        raise UserError(f"{gt}: not found; extract GTSRB_Final_Test_GT.zip into {raw_dir}")
    if not images.is_dir():
        raise UserError(f"{images}: not found; extract GTSRB_Final_Test_Images.zip into {raw_dir}")
    records = []
    for row in _read_gt_csv(gt, need_class=True):
        if not (images / row["Filename"]).is_file():
            skipped.append(f"GTSRB/Final_Test/Images/{row['Filename']}: listed in {gt.name} but missing on disk")
            continue
        label = _class_label(row["ClassId"], gt, num_classes)
        records.append(_row_record(row, f"GTSRB/Final_Test/Images/{row['Filename']}", label, gt))
    return sorted(records)


def _border_roi(width: int, height: int) -> tuple[int, int, int, int]:
    """ROI by the GTSRB border rule (10% of the sign, >= 5 px) when no CSV gives it."""
    bx, by = (max(5, round(s / 12)) for s in (width, height))
    bx, by = min(bx, (width - 1) // 2), min(by, (height - 1) // 2)
    return bx, by, width - bx, height - by


def scale_roi(roi: tuple[int, int, int, int], listed: tuple[int, int],
              actual: tuple[int, int]) -> tuple[int, int, int, int]:
    """``roi`` given for an image of size ``listed`` (the CSV's Width, Height), on the file's
    ``actual`` size: unchanged when they agree, else scaled per axis and rounded (a resized copy)."""
    if listed == actual:
        return roi
    sx, sy = actual[0] / listed[0], actual[1] / listed[1]
    x1, y1, x2, y2 = roi
    return round(x1 * sx), round(y1 * sy), round(x2 * sx), round(y2 * sy)


def load_sample(path: Path, roi: tuple[int, int, int, int] | None, image_size: int,
                listed_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Image uint8 (3, S, S) and ROI foreground mask uint8 (S, S) for one PPM.

    ``listed_size`` is the (Width, Height) the CSV gives with ``roi``; a file of another size (a
    resized copy) gets the ROI scaled to it (:func:`scale_roi`). Raises
    ``OSError``/``ValueError``/``SyntaxError`` for an unreadable or truncated file.
    """
    with Image.open(path) as im:
        im.load()  # decode now: a truncated file fails here, not later
        image = im.convert("RGB")
    width, height = image.size
    if roi is not None and listed_size is not None:
        roi = scale_roi(roi, listed_size, (width, height))
    x1, y1, x2, y2 = roi if roi is not None else _border_roi(width, height)
    mask = np.zeros((height, width), np.uint8)
    mask[max(y1, 0):min(y2, height), max(x1, 0):min(x2, width)] = 1  # half-open ROI at full resolution
    size = (image_size, image_size)
    image = image.resize(size, Image.Resampling.BILINEAR)  # PIL's bilinear widens its kernel when shrinking
    mask = Image.fromarray(mask).resize(size, Image.Resampling.NEAREST)
    return np.asarray(image).transpose(2, 0, 1), np.asarray(mask)  # (3, S, S), (S, S)


def _load_split(raw_dir: Path, records: list[_Record], image_size: int,
                skipped: list[str]) -> PreparedSplit:
    """Load ``records``; unreadable images are appended to ``skipped`` as 'relpath: reason'."""
    images, masks, labels, ids, resized = [], [], [], [], []
    for rec in progress(records, desc="gtsrb images", unit="img"):
        try:
            if rec.size is not None:
                with Image.open(raw_dir / rec.relpath) as im:  # the header only
                    if im.size != rec.size:
                        resized.append(rec.relpath)
            image, mask = load_sample(raw_dir / rec.relpath, rec.roi, image_size, rec.size)
        except (OSError, ValueError, SyntaxError) as exc:
            skipped.append(f"{rec.relpath}: {exc}")
            continue
        images.append(image)
        masks.append(mask)
        labels.append(rec.label)
        ids.append(rec.relpath)
    if resized:
        warnings.warn(f"{raw_dir}: {len(resized)} of {len(records)} images differ in size from their CSV's "
                      f"Width/Height (e.g. {resized[0]}): a resized copy; their ROI boxes were scaled to the files")
    shape = (0, image_size, image_size)
    return PreparedSplit(
        images=np.stack(images) if images else np.zeros((0, 3, image_size, image_size), np.uint8),
        masks=np.stack(masks) if masks else np.zeros(shape, np.uint8),
        labels=np.asarray(labels, np.int64),
        ids=ids,
    )


def prepare_gtsrb(raw_dir: Path, image_size: int) -> tuple[dict[str, PreparedSplit], list[str], list[str]]:
    """Parse a real or synthetic GTSRB under ``raw_dir`` into fixed-size images and ROI masks.

    Returns ({"train", "test"} splits, class names "00000".., skipped files as 'relpath: reason').
    Corrupt images and images a CSV lists but the disk lacks are skipped and reported; a missing or
    empty folder, a missing CSV or a CSV without the official columns raises :class:`UserError`.
    Nothing under ``raw_dir`` is written.
    """
    raw_dir = Path(raw_dir)
    skipped: list[str] = []
    train_records, class_names = _train_records(raw_dir, skipped)
    test_records = _test_records(raw_dir, len(class_names), skipped)
    splits = {
        "train": _load_split(raw_dir, train_records, image_size, skipped),
        "test": _load_split(raw_dir, test_records, image_size, skipped),
    }
    return splits, class_names, skipped
