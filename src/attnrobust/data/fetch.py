"""fetch@<dataset>: generate the embedded synthetic dataset or download the real one.

Both write the same on-disk layout, so the parsers downstream cannot tell them apart. When
``data.<dataset>.local_dir`` names another folder (an existing copy in the official layout, which
masks@<dataset> reads and DVC tracks as its dependency), nothing is downloaded or generated: the
output holds only a note saying so (masks@ refuses it if local_dir is later pointed back here).
The output directory is replaced atomically: a failed fetch leaves the previous one intact.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from attnrobust.config import build
from attnrobust.errors import UserError
from attnrobust.io import replace_dir


@dataclass(frozen=True)
class Generator:
    config: type  # the dataclass of `data.<dataset>`
    generate: Callable[[Path, Any, int], None]  # (out_dir, cfg, seed)
    real_name: str | None  # key in data.sources.SOURCES; None: synthetic only (no official download)


def _generators() -> dict[str, Generator]:
    from attnrobust.data.synthetic.coco import CocoSynthConfig, ScenesSynthConfig, generate_coco
    from attnrobust.data.synthetic.gtsrb import GtsrbSynthConfig, generate_gtsrb

    return {
        "gtsrb": Generator(GtsrbSynthConfig, generate_gtsrb, "gtsrb"),
        "coco": Generator(CocoSynthConfig, generate_coco, "coco"),
        "scenes": Generator(ScenesSynthConfig, generate_coco, None),  # S3TA's search task: no real counterpart
    }


def fetch_dataset(dataset: str, out_dir: Path, *, source: Literal["synthetic", "real"], seed: int,
                  synth_values: dict, where: str) -> None:
    """Write ``dataset`` into ``out_dir`` from ``source``; ``synth_values`` is ``data.<dataset>``."""
    generators = _generators()
    if dataset not in generators:
        raise UserError(f"unknown dataset '{dataset}' (known: {', '.join(generators)})")
    gen = generators[dataset]
    cfg = build(gen.config, synth_values, where)  # validated even for real data: typos fail early
    local_dir = Path(cfg.local_dir)
    if local_dir.resolve() != Path(out_dir).resolve():  # masks@ reads the copy: nothing to download or generate
        with replace_dir(Path(out_dir)) as staging:
            (staging / "NOT_USED.txt").write_text(
                f"masks@{dataset} reads data.{dataset}.local_dir ({local_dir.as_posix()}), not this folder.\n")
        print(f"[fetch {dataset}] data.{dataset}.local_dir is {local_dir}: nothing fetched or generated", file=sys.stderr)
        return
    if source == "real" and gen.real_name is None:
        print(f"[fetch {dataset}] {dataset} has no official download (a synthetic task): generating it", file=sys.stderr)
    elif source == "real":
        from attnrobust.data.sources import fetch_real

        fetch_real(gen.real_name, Path(out_dir))
        return
    with replace_dir(Path(out_dir)) as staging:
        gen.generate(staging, cfg, seed)
    print(f"[fetch {dataset}] synthetic data written to {out_dir}", file=sys.stderr)
