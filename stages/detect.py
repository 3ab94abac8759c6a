"""Stage detect@<name>: attack the teacher (plainly and adaptively), corrupt the inputs, score the detector."""
from pathlib import Path
from typing import Annotated

import typer

from attnrobust.attacks.suite import AttackConfig
from attnrobust.cli import make_app, run_app
from attnrobust.config import load_section
from attnrobust.detect.config import load_spec
from attnrobust.detect.evaluate import evaluate_detector
from attnrobust.provenance import write as write_provenance
from attnrobust.runtime import resolve_device

app = make_app()


@app.command()
def main(
    detector: Annotated[str, typer.Option(help="Key under `detectors` in params.yaml.")],
    teacher: Annotated[Path, typer.Option(help="Model dir of the frozen classifier, from train@<teacher>.")],
    model: Annotated[Path, typer.Option(help="Detector dir from detector@<detector>.")],
    prepared: Annotated[Path, typer.Option(help="Prepared dataset dir (its test split is evaluated).")],
    out: Annotated[Path, typer.Option(help="Output dir: summary.json + roc.csv.")],
    params: Annotated[Path, typer.Option(help="Params file.")] = Path("params.yaml"),
) -> None:
    """ROC-AUC and TPR at 5% FPR per attack, eps, corruption and severity, plus the adaptive attack."""
    spec = load_spec(params, detector)
    cfg = load_section(params, "attack", AttackConfig)
    s = evaluate_detector(detector, spec, teacher, model, prepared, out, cfg)
    write_provenance(out, resolve_device(cfg.device), "fp32", upstream=model)  # detect@ attacks in fp32 (attack.precision: not yet)
    fmt = lambda v: "undefined" if v is None else f"{v:.3f}"  # noqa: E731  (no positives: no AUROC)
    pgd, adaptive = s["attacks"]["pgd"][str(cfg.eps)], s["adaptive"]
    flag = " (UNRELIABLE: see sanity)" if s["unreliable"] else ""
    typer.echo(f"detect@{detector}: AUROC vs PGD at eps {cfg.eps} {fmt(pgd['auroc'])}, adaptive "
               f"{fmt(adaptive['auroc'])}; attack success (misclassified and accepted) {fmt(pgd['success'])} vs "
               f"adaptive {fmt(adaptive['success'])}{flag}")


if __name__ == "__main__":
    run_app(app)
