"""Stage detector@<name>: distil a student from a frozen classifier and fit the iqa_kd detector."""
from pathlib import Path
from typing import Annotated

import typer

from attnrobust.cli import make_app, run_app
from attnrobust.detect.build import build_detector
from attnrobust.detect.config import load_runtime, load_spec
from attnrobust.provenance import write as write_provenance
from attnrobust.runtime import resolve_device

app = make_app()


@app.command()
def main(
    detector: Annotated[str, typer.Option(help="Key under `detectors` in params.yaml.")],
    teacher: Annotated[Path, typer.Option(help="Model dir of the frozen classifier, from train@<teacher>.")],
    prepared: Annotated[Path, typer.Option(help="Prepared dataset dir (its train split is used).")],
    out: Annotated[Path, typer.Option(help="Output dir: student.pt, detector.pt, detector.json.")],
    params: Annotated[Path, typer.Option(help="Params file.")] = Path("params.yaml"),
) -> None:
    """Read `detectors.<detector>` and `train.device`/`train.threads`; the classifier is never retrained."""
    spec = load_spec(params, detector)
    runtime = load_runtime(params)
    info = build_detector(detector, spec, runtime, teacher, prepared, out)
    write_provenance(out, resolve_device(runtime.device), "fp32", upstream=teacher)  # the student and detector train in fp32
    typer.echo(f"detector@{detector}: student agreement {info['student_agreement_heldout']:.3f}, "
               f"training AUROC {info['train_auroc']:.3f} -> {out}")


if __name__ == "__main__":
    run_app(app)
