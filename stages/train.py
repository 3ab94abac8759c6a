"""Stage train@<exp>-<seed>: train one experiment (dataset + method + model) from params.yaml with one
of `train.seeds`."""
from pathlib import Path
from typing import Annotated

import typer

from attnrobust import distributed
from attnrobust.cli import dataset_dir, make_app, run_app
from attnrobust.config import load_section
from attnrobust.experiment import load_experiment
from attnrobust.provenance import write as write_provenance
from attnrobust.runtime import resolve_device
from attnrobust.training import TrainConfig, experiment_config, train_experiment

app = make_app()


@app.command()
def main(
    experiment: Annotated[str, typer.Option(help="Key under `experiments` in params.yaml.")],
    out: Annotated[Path, typer.Option(help="Output dir for model.pt.")],
    live: Annotated[Path, typer.Option(help="dvclive dir for training curves.")],
    seed: Annotated[int | None, typer.Option(help="One of `train.seeds`: init, shuffling and training-time attacks "
                                                  "(default: the first).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Per-epoch resume state file (kept on failure).")] = None,
    prepared: Annotated[Path | None, typer.Option(help="Prepared dataset dir from masks@<dataset> or features.")] = None,
    prepared_root: Annotated[Path | None, typer.Option(help="Or: dir of prepared datasets, <root>/<the experiment's "
                                                            "dataset> (what dvc.yaml passes).")] = None,
    params: Annotated[Path, typer.Option(help="Params file.")] = Path("params.yaml"),
) -> None:
    """Train with `experiments.<experiment>` and the `train` section; write a checkpoint with its config."""
    exp = load_experiment(params, experiment)
    prepared = dataset_dir(prepared, prepared_root, exp.dataset)
    cfg = experiment_config(exp, load_section(params, "train", TrainConfig), seed)
    device = resolve_device(cfg.device)
    if distributed.needs_launch(cfg.nproc):  # DVC runs this one command; torchrun runs the processes
        options = ["--experiment", experiment, "--seed", str(cfg.seed), "--prepared", prepared, "--out", out,
                   "--live", live,
                   *(["--resume", resume] if resume is not None else []), "--params", params]
        raise typer.Exit(distributed.launch(Path(__file__), options, cfg.nproc, device))
    with distributed.process_group(device):
        summary = train_experiment(exp, cfg, prepared, out, live, resume_file=resume, seed=cfg.seed)
    if not distributed.is_main():
        return
    write_provenance(out, device, cfg.precision)
    if resume is not None:
        resume.unlink(missing_ok=True)  # finished: the checkpoint in `out` is the result
    typer.echo(f"train@{experiment}-{cfg.seed}: {summary}")


if __name__ == "__main__":
    run_app(app)
