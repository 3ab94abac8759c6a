"""Stage report: reports/report.md and its PNG figures, from the metrics and the attack results."""
from pathlib import Path
from typing import Annotated

import typer

from attnrobust.cli import make_app, run_app
from attnrobust.config import get_key, read_params
from attnrobust.errors import UserError
from attnrobust.report import RunInfo, build_report, load_inputs

app = make_app()


def run_info(params: Path) -> RunInfo:
    """What was run: reads `profile`, `data.source`, `experiments` and `train` (for the report's first section)."""
    values = read_params(params)
    experiments = get_key(values, "experiments", params)
    if not isinstance(experiments, dict) or not all(isinstance(v, dict) for v in experiments.values()):
        raise UserError(f"{params}: experiments: expected a mapping of experiment name -> settings")
    train = get_key(values, "train", params)
    return RunInfo(str(get_key(values, "data.source", params)), str(values.get("profile") or "default"), experiments,
                   train if isinstance(train, dict) else {})


@app.command()
def main(
    metrics: Annotated[Path, typer.Option(help="metrics/robustness.json from the metrics stage.")],
    claims: Annotated[Path, typer.Option(help="metrics/claims.json from the metrics stage.")],
    plots: Annotated[Path, typer.Option(help="Dir of plot CSVs (robustness curves, race.csv, roc.csv).")],
    results: Annotated[Path, typer.Option(help="Dir holding results/attack/<exp>/.")],
    out: Annotated[Path, typer.Option(help="Report dir to (re)write: report.md + figures/.")],
    detect: Annotated[Path | None, typer.Option(help="Dir holding results/detect/<name>/, if any.")] = None,
    env: Annotated[Path | None, typer.Option(help="metrics/env.json: what produced the results.")] = None,
    beside: Annotated[Path | None, typer.Option(help="A committed run of another profile (runs/<name>/: run.json, "
                                                     "metrics/), shown beside this one.")] = None,
    params: Annotated[Path, typer.Option(help="Params file (reads `profile`, `data.source`, `experiments`, "
                                              "`train`).")] = Path(
        "params.yaml"),
) -> None:
    """Write the claims table, a headline table per dataset, the figures and the sanity-check failures."""
    inputs = load_inputs(run_info(params), metrics=metrics, claims=claims, plots=plots, results=results,
                         detect=detect, env=env, beside=beside)
    summary = build_report(inputs, out)
    typer.echo(f"report: {summary['figures']} figures, {summary['claims']} claims, {summary['missing']} missing "
               f"input(s) -> {out / 'report.md'} ({summary['seconds']}s)")


if __name__ == "__main__":
    run_app(app)
