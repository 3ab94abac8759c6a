"""Stage attack@<exp>-<seed>: the shared evaluation suite on one trained model (train@<exp>-<seed>)."""
from pathlib import Path
from typing import Annotated

import typer

from attnrobust import distributed
from attnrobust.evaluation import evaluate_checkpoint
from attnrobust.attacks.suite import AttackConfig
from attnrobust.cli import dataset_dir, make_app, run_app
from attnrobust.config import load_section, load_value
from attnrobust.provenance import write as write_provenance
from attnrobust.runtime import resolve_device

app = make_app()


@app.command()
def main(
    experiment: Annotated[str, typer.Option(help="Experiment name (must match the checkpoint).")],
    model: Annotated[Path, typer.Option(help="Model dir from train@<exp>-<seed>.")],
    out: Annotated[Path, typer.Option(help="Output dir: summary.json + per_sample.csv.")],
    prepared: Annotated[Path | None, typer.Option(help="Prepared dataset dir (its test split is attacked).")] = None,
    prepared_root: Annotated[Path | None, typer.Option(help="Or: dir of prepared datasets, <root>/<the experiment's "
                                                            "dataset> (what dvc.yaml passes).")] = None,
    params: Annotated[Path, typer.Option(help="Params file.")] = Path("params.yaml"),
) -> None:
    """Run FGSM, PGD, random-targeted PGD, eps and steps sweeps and the sanity checks."""
    cfg = load_section(params, "attack", AttackConfig)
    dataset = str(load_value(params, f"experiments.{experiment}.dataset")[0]) if prepared is None else ""
    prepared = dataset_dir(prepared, prepared_root, dataset)
    device = resolve_device(cfg.device)
    if distributed.needs_launch(cfg.nproc):  # DVC runs this one command; torchrun runs the processes
        options = ["--experiment", experiment, "--model", model, "--prepared", prepared, "--out", out,
                   "--params", params]
        raise typer.Exit(distributed.launch(Path(__file__), options, cfg.nproc, device))
    with distributed.process_group(device):
        summary = evaluate_checkpoint(experiment, model, prepared, out, cfg)
    if not distributed.is_main():
        return
    write_provenance(out, device, cfg.precision, upstream=model)
    flag = " (UNRELIABLE: see sanity)" if summary["unreliable"] else ""
    key = "robust_gap" if "robust_gap" in summary else "robust_acc"  # video: GAP@20
    typer.echo(f"attack@{experiment}: {key} {summary[key]:.4f} at eps {cfg.eps}{flag}")


if __name__ == "__main__":
    run_app(app)
