"""fetch@<dataset>: generate the embedded synthetic dataset or download the real one.

Both write the same on-disk layout, so the parsers downstream cannot tell them apart.
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
    real_name: str  # key in data.sources.SOURCES


def _generators() -> dict[str, Generator]:
    from attnrobust.data.coco import CocoSynthConfig, generate_coco
    from attnrobust.data.gtsrb import GtsrbSynthConfig, generate_gtsrb

    return {
        "gtsrb": Generator(GtsrbSynthConfig, generate_gtsrb, "gtsrb"),
        "coco": Generator(CocoSynthConfig, generate_coco, "coco"),
    }


def fetch_dataset(dataset: str, out_dir: Path, *, source: Literal["synthetic", "real"], seed: int,
                  synth_values: dict, where: str) -> None:
    """Write ``dataset`` into ``out_dir`` from ``source``; ``synth_values`` is ``data.<dataset>``."""
    generators = _generators()
    if dataset not in generators:
        raise UserError(f"unknown dataset '{dataset}' (known: {', '.join(generators)})")
    gen = generators[dataset]
    cfg = build(gen.config, synth_values, where)  # validated even for real data: typos fail early
    if source == "real":
        from attnrobust.data.sources import fetch_real

        fetch_real(gen.real_name, Path(out_dir))
        return
    with replace_dir(Path(out_dir)) as staging:
        gen.generate(staging, cfg, seed)
    print(f"[fetch {dataset}] synthetic data written to {out_dir}", file=sys.stderr)
