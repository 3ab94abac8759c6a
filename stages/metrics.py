"""Stage metrics: gather attack summaries into git-tracked metrics JSON and plot tables."""
from pathlib import Path
from typing import Annotated

import typer

from attnrobust.cli import make_app, run_app
from attnrobust.config import get_key, read_params
from attnrobust.io import write_json
from attnrobust.metrics.aggregate import headline_metrics, read_summaries, write_curve

app = make_app()


@app.command()
def main(
    results: Annotated[Path, typer.Option(help="Dir holding results/attack/<exp>/summary.json.")],
    out: Annotated[Path, typer.Option(help="Metrics JSON to write.")],
    plots: Annotated[Path, typer.Option(help="Dir for plot CSVs.")],
    params: Annotated[Path, typer.Option(help="Params file (reads the experiment names).")] = Path("params.yaml"),
) -> None:
    """Write `{exp: {metric: value}}` and the robustness-vs-eps and vs-steps tables."""
    experiments = list(get_key(read_params(params), "experiments", params))
    summaries = read_summaries(results, experiments)
    write_json(out, headline_metrics(summaries))
    write_curve(plots / "robustness_vs_eps.csv", summaries, "eps", "eps_acc")
    write_curve(plots / "robustness_vs_steps.csv", summaries, "steps", "steps_acc")
    typer.echo(f"metrics: {len(summaries)} experiments -> {out}")


if __name__ == "__main__":
    run_app(app)
