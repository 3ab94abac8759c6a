"""Stage metrics: gather attack summaries into git-tracked metrics JSON, plot tables and claims."""
from pathlib import Path
from typing import Annotated

import typer

from attnrobust.cli import make_app, run_app
from attnrobust.config import get_key, read_params
from attnrobust.io import write_json
from attnrobust.metrics.aggregate import headline_metrics, read_summaries, write_curves, write_race
from attnrobust.metrics.claims import evaluate_claims

app = make_app()


@app.command()
def main(
    results: Annotated[Path, typer.Option(help="Dir holding results/attack/<exp>/summary.json.")],
    out: Annotated[Path, typer.Option(help="Metrics JSON to write.")],
    claims: Annotated[Path, typer.Option(help="Claims JSON to write.")],
    plots: Annotated[Path, typer.Option(help="Dir for plot CSVs.")],
    params: Annotated[Path, typer.Option(help="Params file (reads `experiments` names and `claims`).")] = Path(
        "params.yaml"),
) -> None:
    """Write `{exp: {metric: value}}`, the robustness curves, the S3TA race table and the claims table."""
    values = read_params(params)
    summaries = read_summaries(results, list(get_key(values, "experiments", params)))
    write_json(out, headline_metrics(summaries))
    plots.mkdir(parents=True, exist_ok=True)
    for stale in plots.glob("*.csv"):  # rewrite the folder completely
        stale.unlink()
    write_curves(plots, summaries)
    write_race(plots / "race.csv", summaries)
    table = evaluate_claims(summaries, get_key(values, "claims", params))
    write_json(claims, table)
    held = sum(c["holds"] for c in table.values())
    typer.echo(f"metrics: {len(summaries)} experiments -> {out}; claims holding {held}/{len(table)} -> {claims}")


if __name__ == "__main__":
    run_app(app)
