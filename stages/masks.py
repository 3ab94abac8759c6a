"""Stage masks@<dataset>: parse raw data, build foreground masks, write prepared shards."""
from pathlib import Path
from typing import Annotated

import typer

from attnrobust.cli import make_app, run_app
from attnrobust.config import load_section
from attnrobust.data.prepare import PREPARERS, prepare_dataset
from attnrobust.errors import UserError

app = make_app()


@app.command()
def main(
    dataset: Annotated[str, typer.Option(help="Dataset id: gtsrb, coco or scenes.")],
    raw: Annotated[Path, typer.Option(help="Dataset dir in the official layout: data.<dataset>.local_dir.")],
    out: Annotated[Path, typer.Option(help="Prepared dataset dir to (re)write.")],
    params: Annotated[Path, typer.Option(help="Params file.")] = Path("params.yaml"),
) -> None:
    """Reads `masks.<dataset>` and the dataset in its official layout at `--raw`, which it never changes."""
    if dataset not in PREPARERS:
        raise UserError(f"unknown dataset '{dataset}' (known: {', '.join(PREPARERS)})")
    cfg = load_section(params, f"masks.{dataset}", PREPARERS[dataset][0])
    if not raw.is_dir():
        raise UserError(f"{raw}: not found; data.{dataset}.local_dir must name fetch@{dataset}'s output "
                        f"(data/raw/{dataset}) or an existing copy in the official layout (README: real data)")
    if (raw / "NOT_USED.txt").is_file():
        raise UserError(f"{raw}: fetch@{dataset} downloaded nothing because data.{dataset}.local_dir named "
                        f"another folder when it ran; run `dvc repro fetch@{dataset}` again")
    stats = prepare_dataset(dataset, raw, out, cfg)
    typer.echo(f"masks@{dataset}: {stats['splits']} samples, {stats['skipped']} skipped -> {out}")


if __name__ == "__main__":
    run_app(app)
