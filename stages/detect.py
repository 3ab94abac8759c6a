"""Stage detect@<name>: attack the teacher (plainly and adaptively), corrupt the inputs, score the detector;
once per training seed of the teacher (`train.seeds`): results/detect/<name>/s<seed>/."""
import contextlib
import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from attnrobust import distributed
from attnrobust.attacks.suite import AttackConfig
from attnrobust.cli import make_app, run_app
from attnrobust.config import load_section
from attnrobust.detect.config import load_seeds, load_spec
from attnrobust.io import replace_dir
from attnrobust.detect.evaluate import evaluate_detector
from attnrobust.provenance import write as write_provenance
from attnrobust.runtime import resolve_device

app = make_app()


@app.command()
def main(
    detector: Annotated[str, typer.Option(help="Key under `detectors` in params.yaml.")],
    teacher: Annotated[Path, typer.Option(help="models/<teacher>: one s<seed>/ per train.seeds.")],
    model: Annotated[Path, typer.Option(help="Detector dir from detector@<detector> (one s<seed>/ per seed).")],
    prepared: Annotated[Path, typer.Option(help="Prepared dataset dir (its test split is evaluated).")],
    out: Annotated[Path, typer.Option(help="Output dir: s<seed>/ with summary.json, roc.csv, per_sample.npz.")],
    params: Annotated[Path, typer.Option(help="Params file.")] = Path("params.yaml"),
) -> None:
    """ROC-AUC and TPR at 5% FPR per attack, eps, corruption and severity, plus the adaptive attack."""
    spec, seeds = load_spec(params, detector), load_seeds(params)
    cfg = load_section(params, "attack", AttackConfig)
    device = resolve_device(cfg.device)
    if distributed.needs_launch(cfg.nproc):  # attack.nproc: DVC runs this one command, torchrun the processes
        options = ["--detector", detector, "--teacher", teacher, "--model", model, "--prepared", prepared,
                   "--out", out, "--params", params]
        raise typer.Exit(distributed.launch(Path(__file__), options, cfg.nproc, device))
    with distributed.process_group(device):
        writer = distributed.is_main()  # the others take their share of every attack; the main one writes
        with replace_dir(out) if writer else contextlib.nullcontext() as staging:  # every seed rewritten, or none
            for seed in seeds:
                s = evaluate_detector(detector, dataclasses.replace(spec, seed=spec.seed + seed),
                                      teacher / f"s{seed}", model / f"s{seed}", prepared,
                                      staging / f"s{seed}" if writer else None, cfg)
                if writer:
                    write_provenance(staging / f"s{seed}", device, cfg.precision,  # of its attacks
                                     upstream=model / f"s{seed}")
                    _echo(detector, seed, cfg, s)

def _echo(detector: str, seed: int, cfg: AttackConfig, s: dict) -> None:
    fmt = lambda v: "undefined" if v is None else f"{v:.3f}"  # noqa: E731  (no positives: no AUROC)
    pgd, adaptive = s["attacks"]["pgd"][str(cfg.eps)], s["adaptive"]
    flag = " (UNRELIABLE: see sanity)" if s["unreliable"] else ""
    typer.echo(f"detect@{detector} (teacher seed {seed}): AUROC vs PGD at eps {cfg.eps} {fmt(pgd['auroc'])}, adaptive "
               f"{fmt(adaptive['auroc'])}; attack success (misclassified and accepted) {fmt(pgd['success'])} vs "
               f"adaptive {fmt(adaptive['success'])}{flag}")


if __name__ == "__main__":
    run_app(app)
