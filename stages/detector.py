"""Stage detector@<name>: distil a student from a frozen classifier and fit the iqa_kd detector, once
per training seed of the classifier (`train.seeds`): models/detectors/<name>/s<seed>/."""
import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from attnrobust.cli import make_app, run_app
from attnrobust.detect.build import build_detector
from attnrobust.detect.config import load_runtime, load_seeds, load_spec
from attnrobust.io import replace_dir
from attnrobust.provenance import write as write_provenance
from attnrobust.runtime import resolve_device

app = make_app()


@app.command()
def main(
    detector: Annotated[str, typer.Option(help="Key under `detectors` in params.yaml.")],
    teacher: Annotated[Path, typer.Option(help="models/<teacher>: one s<seed>/ per train.seeds, from "
                                                 "train@<teacher>-<seed>.")],
    prepared: Annotated[Path, typer.Option(help="Prepared dataset dir (its train split is used).")],
    out: Annotated[Path, typer.Option(help="Output dir: s<seed>/ with student.pt, detector.pt, detector.json.")],
    params: Annotated[Path, typer.Option(help="Params file.")] = Path("params.yaml"),
) -> None:
    """Read `detectors.<detector>`, `train.seeds` and `train.device`/`train.threads`; the classifier is never
    retrained. The detector of the teacher's seed s is built with `detectors.<detector>.seed` + s."""
    spec, seeds = load_spec(params, detector), load_seeds(params)
    runtime = load_runtime(params)
    with replace_dir(out) as staging:  # every seed rewritten, or none
        for seed in seeds:
            here = staging / f"s{seed}"
            info = build_detector(detector, dataclasses.replace(spec, seed=spec.seed + seed), runtime,
                                  teacher / f"s{seed}", prepared, here)
            write_provenance(here, resolve_device(runtime.device), "fp32", upstream=teacher / f"s{seed}")  # fp32
            typer.echo(f"detector@{detector} (teacher seed {seed}): student agreement "
                       f"{info['student_agreement_heldout']:.3f}, training AUROC {info['train_auroc']:.3f}")
    typer.echo(f"detector@{detector}: {len(seeds)} seed(s) -> {out}")


if __name__ == "__main__":
    run_app(app)
