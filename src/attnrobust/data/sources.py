"""Official sources of the real datasets, and ``fetch_real``, which turns them into ``data/raw/<dataset>``.

Checksums (see docs/spec ``datasets.md``):

- **GTSRB**: the md5s torchvision hard-codes for the archives on sid.erda.dk.
- **COCO-2017**: COCO publishes no md5. These are community-computed checksums that agree
  across PaddleDetection, the R ``torchvision`` package and several scripts.
- **UCF-101**: no checksum is published for either file, so none is checked (``md5=None``).

Layouts after ``fetch_real(dataset, out_dir)``::

    gtsrb   out_dir/GTSRB/Training/000NN/*.ppm, out_dir/GTSRB/Final_Test/Images/*.ppm,
            out_dir/GT-final_test.csv
    coco    out_dir/val2017/*.jpg, out_dir/annotations/instances_val2017.json
            (+ out_dir/train2017/ with include_train=True)
    ucf101  out_dir/UCF-101/<Class>/*.avi, out_dir/ucfTrainTestlist/*.txt
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from attnrobust.data.download import download, safe_extract
from attnrobust.errors import UserError
from attnrobust.io import replace_dir

GTSRB_BASE = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"
COCO_BASE = "https://images.cocodataset.org/"
UCF101_BASE = "https://www.crcv.ucf.edu/data/UCF101/"


@dataclass(frozen=True)
class Source:
    """One official archive of a dataset."""

    url: str  # full official https URL
    filename: str  # name of the archive in the download cache
    md5: str | None  # expected md5 of the archive; None where no checksum exists
    extract_to: str = "."  # folder inside the dataset directory the archive unpacks into
    on_request: bool = False  # fetched only with include_train=True (COCO train2017, 18 GB)


def _source(base: str, path: str, md5: str | None, *, on_request: bool = False) -> Source:
    """A ``Source`` at ``base + path`` whose file name is the last component of its URL."""
    return Source(url=base + path, filename=path.rsplit("/", 1)[-1], md5=md5, on_request=on_request)


SOURCES: dict[str, tuple[Source, ...]] = {
    "gtsrb": (
        _source(GTSRB_BASE, "GTSRB-Training_fixed.zip", "513f3c79a4c5141765e10e952eaa2478"),
        _source(GTSRB_BASE, "GTSRB_Final_Test_Images.zip", "c7e4e6327067d32654124b0fe9e82185"),
        _source(GTSRB_BASE, "GTSRB_Final_Test_GT.zip", "fe31e9c9270bbcd7b84b7f21a9d9d9e5"),
    ),
    "coco": (
        _source(COCO_BASE, "zips/val2017.zip", "442b8da7639aecaf257c1dceb8ba8c80"),
        _source(COCO_BASE, "annotations/annotations_trainval2017.zip", "f4bbac642086de4f52a3fdda2de5fa2c"),
        _source(COCO_BASE, "zips/train2017.zip", "cced6f7f71b7629ddf16f17bbcfab6b2", on_request=True),
    ),
    "ucf101": (
        _source(UCF101_BASE, "UCF101.rar", None),
        _source(UCF101_BASE, "UCF101TrainTestSplits-RecognitionTask.zip", None),
    ),
}


def sources_for(dataset: str, *, include_train: bool = False) -> tuple[Source, ...]:
    """The archives to fetch for ``dataset``; ``UserError`` for an unknown name."""
    if dataset not in SOURCES:
        raise UserError(f"no real download for dataset {dataset!r}; known: {sorted(SOURCES)}")
    return tuple(s for s in SOURCES[dataset] if include_train or not s.on_request)


def with_base_url(url: str, base_url: str | None) -> str:
    """``url`` with its scheme and host replaced by ``base_url``'s (whose path, if any, is prefixed)."""
    if base_url is None:
        return url
    base, orig = urlsplit(base_url), urlsplit(url)
    return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + orig.path, orig.query, ""))


def fetch_real(
    dataset: str,
    out_dir: Path,
    *,
    base_url: str | None = None,
    cache_dir: Path | None = None,
    include_train: bool = False,
) -> None:
    """Download, verify and extract every archive of ``dataset``, then place the result at ``out_dir``.

    Archives are kept in ``cache_dir`` (default ``out_dir.parent / ".downloads"``), so an
    interrupted download resumes on the next run and a finished one is not fetched again.
    ``out_dir`` is replaced atomically: after any error it is absent (or still the previous
    version). ``base_url`` replaces the scheme and host of every URL (tests use a loopback server).
    """
    out_dir = Path(out_dir)
    cache_dir = Path(cache_dir) if cache_dir is not None else out_dir.parent / ".downloads"
    sources = sources_for(dataset, include_train=include_train)
    archives = [download(with_base_url(s.url, base_url), cache_dir / s.filename, s.md5) for s in sources]
    with replace_dir(out_dir) as staging:
        for source, archive in zip(sources, archives, strict=True):
            safe_extract(archive, staging / source.extract_to)
