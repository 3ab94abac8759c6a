"""Do the verdicts survive a re-run with other training seeds? Compare two runs' claims.

    python bench/seed_stability.py RUN_A RUN_B [--label-a 0-2 --label-b 3-5]

RUN_A and RUN_B are checkouts (or any folders) holding ``metrics/verdicts.json`` and
``metrics/claims.json`` from the same code and params but disjoint ``train.seeds``, e.g. this
repository and a worktree where params.yaml says ``train.seeds: [3, 4, 5]``:

    git worktree add ../seeds345 HEAD && cd ../seeds345
    sed -i 's/seeds: \\[0, 1, 2\\]/seeds: [3, 4, 5]/' params.yaml
    dvc config --local cache.dir "$OLDPWD/.dvc/cache"   # the data stages come from the run cache
    dvc repro metrics

Prints a markdown table (claim, each run's verdict with its effect and 95% interval, agreement)
and a summary line: how many verdicts agree, and how many flip between ``holds`` and
``contradicted`` (the failure the seeds are there to prevent). Exits 1 on such a flip.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OPPOSITE = {("holds", "contradicted"), ("contradicted", "holds")}


def load(run: Path) -> tuple[dict, dict]:
    verdicts = json.loads((run / "metrics" / "verdicts.json").read_text())
    claims = json.loads((run / "metrics" / "claims.json").read_text())
    return verdicts, claims


def _cell(row: dict) -> str:
    if row.get("effect") is None:
        return f"{row['verdict']} (untested)"
    return f"{row['verdict']} {row['effect']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"


def compare(a: dict, b: dict) -> dict:
    """Per claim in both runs: the two verdicts, whether they agree, whether they flip between
    holds and contradicted; and the counts."""
    rows = {}
    for key in sorted(set(a) & set(b)):
        va, vb = a[key]["verdict"], b[key]["verdict"]
        rows[key] = {"a": a[key], "b": b[key], "agree": va == vb, "flip": (va, vb) in OPPOSITE}
    return {"rows": rows, "n": len(rows), "agree": sum(r["agree"] for r in rows.values()),
            "flips": sum(r["flip"] for r in rows.values()),
            "only_a": sorted(set(a) - set(b)), "only_b": sorted(set(b) - set(a))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--label-a", default="A")
    parser.add_argument("--label-b", default="B")
    args = parser.parse_args()
    (va, ca), (vb, _) = load(args.run_a), load(args.run_b)
    result = compare(va, vb)
    print(f"| claim | what | seeds {args.label_a} | seeds {args.label_b} | agree |\n|---|---|---|---|---|")
    for key, row in result["rows"].items():
        what = ca.get(key, {}).get("claim", "")
        mark = "yes" if row["agree"] else ("**FLIP**" if row["flip"] else "no")
        print(f"| `{key}` | {what} | {_cell(row['a'])} | {_cell(row['b'])} | {mark} |")
    counts = {}
    for row in result["rows"].values():
        pair = (row["a"]["verdict"], row["b"]["verdict"])
        counts[pair] = counts.get(pair, 0) + 1
    moved = ", ".join(f"{n} {x} -> {y}" for (x, y), n in sorted(counts.items()) if x != y) or "none"
    print(f"\n{result['agree']} of {result['n']} verdicts agree; {result['flips']} flip between holds and "
          f"contradicted; moved ({args.label_a} -> {args.label_b}): {moved}")
    if result["only_a"] or result["only_b"]:
        print(f"claims in one run only: {result['only_a'] + result['only_b']}")
    return 1 if result["flips"] else 0


if __name__ == "__main__":
    sys.exit(main())
