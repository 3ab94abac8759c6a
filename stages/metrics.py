"""Stage metrics: gather attack summaries into git-tracked metrics JSON, plot tables and claims."""
from pathlib import Path
from typing import Annotated

import typer

from attnrobust.cli import make_app, run_app
from attnrobust.config import get_key, read_params
from attnrobust.io import write_json
from attnrobust.metrics.aggregate import (headline_metrics, read_clean_test, read_per_sample, read_scores,
                                         read_summaries, seed_dirs, write_curves, write_race, write_training_curves)
from attnrobust.errors import UserError
from attnrobust.metrics.claims import evaluate_claims
from attnrobust.metrics.detection import detection_headline, read_detect_summaries, write_roc
from attnrobust.provenance import gather

app = make_app()


def verdict_row(claim: dict) -> dict:
    """What `dvc metrics diff` shows of a claim: its verdict word, the headline comparison's
    effect, 95% interval, n, seeds and seed-to-seed sd, the Holm-corrected p, and `unreliable`."""
    row = {"verdict": claim["verdict"], "unreliable": claim["unreliable"]}
    if claim["tests"]:
        first = claim["tests"][0]
        row.update({"effect": first["effect"], "ci_low": first["ci_low"], "ci_high": first["ci_high"],
                    "n": first["n"], "seeds": first.get("seeds", 1), "seed_sd": first.get("seed_sd"),
                    "p_holm": claim["p_holm"]})
    return row


@app.command()
def main(
    results: Annotated[Path, typer.Option(help="Dir holding results/attack/<exp>/s<seed>/summary.json.")],
    out: Annotated[Path, typer.Option(help="Metrics JSON to write.")],
    claims: Annotated[Path, typer.Option(help="Claims JSON to write.")],
    plots: Annotated[Path, typer.Option(help="Dir for plot CSVs.")],
    detect: Annotated[Path, typer.Option(help="Dir holding results/detect/<detector>/ (iqa_kd).")] = Path(
        "results/detect"),
    detection: Annotated[Path, typer.Option(help="Detector metrics JSON to write.")] = Path(
        "metrics/detection.json"),
    verdicts: Annotated[Path | None, typer.Option(help="Verdicts JSON to write (short words, for `dvc metrics "
                                                       "diff`); default: verdicts.json beside --claims.")] = None,
    env: Annotated[Path | None, typer.Option(help="Environment JSON to write (what produced the results); "
                                                  "default: env.json beside --claims.")] = None,
    live: Annotated[Path, typer.Option(help="Dir holding dvclive/train/<exp>/s<seed>/ training curves.")] = Path(
        "dvclive/train"),
    params: Annotated[Path, typer.Option(help="Params file (reads `experiments` and `detectors` names, "
                                              "`train.seeds` and `claims`).")] = Path("params.yaml"),
) -> None:
    """Write `{exp: {metric: value}}`, the detectors' table, the robustness and ROC curves, the S3TA
    race table and the claims table."""
    values = read_params(params)
    verdicts, env = verdicts or claims.with_name("verdicts.json"), env or claims.with_name("env.json")
    experiments = list(get_key(values, "experiments", params))
    detectors = list(values.get("detectors") or {})
    seeds = list(get_key(values, "train.seeds", params))
    if clash := sorted(set(experiments) & set(detectors)):
        raise UserError(f"{params}: {', '.join(clash)} named both as experiment and as detector; rename one")
    summaries = read_summaries(results, experiments, seeds)
    detected = read_detect_summaries(detect, detectors, seeds)
    write_json(out, headline_metrics(summaries))
    write_json(detection, detection_headline(detected))
    plots.mkdir(parents=True, exist_ok=True)
    for stale in plots.glob("*.csv"):  # rewrite the folder completely
        stale.unlink()
    write_curves(plots, summaries)
    write_training_curves(plots, live, experiments, seeds)
    write_race(plots / "race.csv", summaries)
    write_roc(plots / "roc.csv", detect, detectors, seeds[0])
    outcomes = {exp: {**s, "per_sample": read_per_sample(results, exp, seeds), "scores": read_scores(results, exp, seeds),
                      "clean_test": read_clean_test(results, exp, seeds)} for exp, s in summaries.items()}
    table = evaluate_claims({**outcomes, **detected}, get_key(values, "claims", params))
    write_json(claims, table)  # with sentences, for the report; verdicts.json is what `metrics diff` shows
    write_json(verdicts, {key: verdict_row(c) for key, c in table.items()})
    write_json(env, gather([d for e in experiments for d in seed_dirs(results, e, seeds)]
                           + [d for n in detectors for d in seed_dirs(detect, n, seeds)]))
    held = sum(c["verdict"] == "holds" for c in table.values())
    typer.echo(f"metrics: {len(summaries)} experiments -> {out}, {len(detected)} detectors -> {detection}; "
               f"claims holding {held}/{len(table)} -> {claims}")


if __name__ == "__main__":
    run_app(app)
