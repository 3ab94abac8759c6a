"""masks@<dataset>: parse the raw format, build foreground masks, resize, write prepared shards."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from attnrobust.data.prepared import write_prepared
from attnrobust.errors import UserError
from attnrobust.io import replace_dir


@dataclass(frozen=True)
class GtsrbPrepareConfig:
    image_size: int = 32  # side of the square prepared images, px
    shard_size: int = 4096  # samples per .npz shard

    def __post_init__(self) -> None:
        if self.image_size < 8 or self.shard_size < 1:
            raise ValueError("need image_size >= 8 and shard_size >= 1")


@dataclass(frozen=True)
class CocoPrepareConfig(GtsrbPrepareConfig):
    include_crowd: bool = True  # crowd (iscrowd=1) regions count as foreground


def _prepare_gtsrb(raw_dir: Path, cfg: GtsrbPrepareConfig):
    from attnrobust.data.gtsrb import prepare_gtsrb

    return prepare_gtsrb(raw_dir, cfg.image_size)


def _prepare_coco(raw_dir: Path, cfg: CocoPrepareConfig):
    from attnrobust.data.coco import prepare_coco

    return prepare_coco(raw_dir, cfg.image_size, cfg.include_crowd)


# dataset -> (config dataclass of `masks.<dataset>`, parser returning (splits, classes, skipped))
# scenes: S3TA's search task, synthetic scenes written in COCO's layout, so parsed as COCO is
PREPARERS = {"gtsrb": (GtsrbPrepareConfig, _prepare_gtsrb), "coco": (CocoPrepareConfig, _prepare_coco),
             "scenes": (CocoPrepareConfig, _prepare_coco)}


def prepare_dataset(dataset: str, raw_dir: Path, out_dir: Path, cfg: GtsrbPrepareConfig) -> dict:
    """Parse ``raw_dir`` and write the prepared shards to ``out_dir``; returns counts and skipped files."""
    if dataset not in PREPARERS:
        raise UserError(f"unknown dataset '{dataset}' (known: {', '.join(PREPARERS)})")
    splits, classes, skipped = PREPARERS[dataset][1](Path(raw_dir), cfg)
    for split, data in splits.items():
        if len(data.labels) == 0:
            raise UserError(f"{raw_dir}: no usable samples in split '{split}' ({len(skipped)} skipped)")
    with replace_dir(Path(out_dir)) as staging:
        write_prepared(staging, splits, dataset=dataset, classes=classes, shard_size=cfg.shard_size,
                       extra_meta={"skipped": skipped})
    if skipped:
        shown = "; ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        print(f"[masks {dataset}] skipped {len(skipped)} corrupt or unusable file(s): {shown} "
              f"(every one, with its reason: {Path(out_dir) / 'meta.json'}, key skipped)", file=sys.stderr)
    return {"splits": {k: len(v.labels) for k, v in splits.items()}, "skipped": len(skipped)}
