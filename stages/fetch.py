"""Stage fetch@<dataset>: synthetic data in the real on-disk format, or the official download."""
from pathlib import Path
from typing import Annotated

import typer

from attnrobust.cli import make_app, run_app
from attnrobust.config import build, get_key, read_params
from attnrobust.data.fetch import fetch_dataset
from attnrobust.errors import UserError
from attnrobust.video.fetch import VideoDataConfig, fetch_video

app = make_app()


@app.command()
def main(
    dataset: Annotated[str, typer.Option(help="Dataset id: gtsrb, coco, scenes or video.")],
    out: Annotated[Path, typer.Option(help="Raw dataset dir to (re)write.")],
    params: Annotated[Path, typer.Option(help="Params file.")] = Path("params.yaml"),
) -> None:
    """Reads `data.source`, `data.seed` and `data.<dataset>`."""
    values = read_params(params)
    source = get_key(values, "data.source", params)
    if source not in ("synthetic", "real"):
        raise UserError(f"{params}: data.source: {source!r} is not one of 'synthetic', 'real'")
    seed = get_key(values, "data.seed", params)
    section = get_key(values, f"data.{dataset}", params)
    if dataset == "video":  # videos have two raw kinds (clips, YouTube-8M records): their own config
        fetch_video(out, source=source, cfg=build(VideoDataConfig, section, f"{params}: data.video"), seed=seed)
    else:
        fetch_dataset(dataset, out, source=source, seed=seed, synth_values=section, where=f"{params}: data.{dataset}")
    typer.echo(f"fetch@{dataset}: {source} data in {out}")


if __name__ == "__main__":
    run_app(app)
