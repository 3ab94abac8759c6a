"""Stage detector@<name>: distil a student from a frozen classifier and fit the iqa_kd detector."""
from pathlib import Path
from typing import Annotated

import typer

from attnrobust.cli import make_app, run_app
from attnrobust.detect.build import build_detector
from attnrobust.detect.config import load_runtime, load_spec

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
    info = build_detector(detector, spec, load_runtime(params), teacher, prepared, out)
    typer.echo(f"detector@{detector}: student agreement {info['student_agreement_heldout']:.3f}, "
               f"training AUROC {info['train_auroc']:.3f} -> {out}")


if __name__ == "__main__":
    run_app(app)
