"""Stage features: frame features of every clip (decord + frozen backbone, YouTube-8M quantisation)."""
from pathlib import Path
from typing import Annotated

import typer

from attnrobust.cli import make_app, run_app
from attnrobust.config import get_key, load_section, read_params
from attnrobust.video.features import FeaturesConfig
from attnrobust.video.fetch import build_features

app = make_app()


@app.command()
def main(
    raw: Annotated[Path, typer.Option(help="Raw video dir from fetch@video (clips or TFRecords).")],
    out: Annotated[Path, typer.Option(help="Feature shard dir to (re)write.")],
    params: Annotated[Path, typer.Option(help="Params file.")] = Path("params.yaml"),
) -> None:
    """Reads `features` and `data.seed` (seeds the backbone's random init)."""
    cfg = load_section(params, "features", FeaturesConfig)
    seed = get_key(read_params(params), "data.seed", params)
    summary = build_features(raw, out, cfg, seed)
    typer.echo(f"features: {summary.get('splits')} clips, {len(summary.get('skipped', []))} skipped -> {out}")


if __name__ == "__main__":
    run_app(app)
