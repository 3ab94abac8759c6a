"""Per-stage wall time of a `dvc repro`, from its output with a timestamp on every line.

    dvc repro 2>&1 | python -u -c 'import sys, time
    for line in sys.stdin: print(f"{time.time():.1f} {line}", end="", flush=True)' > repro.log
    python bench/stage_times.py repro.log

Prints a markdown table: each stage's seconds (until the next stage starts or the run ends),
summed by stage family (fetch, train, attack, ...), largest first.
"""
from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

STAGE = re.compile(r"^(\d+(?:\.\d+)?) Running stage '([^']+)'")


def stage_seconds(lines: list[str]) -> dict[str, float]:
    starts = [(float(m[1]), m[2]) for line in lines if (m := STAGE.match(line))]
    end = float(lines[-1].split(" ", 1)[0]) if lines else 0.0
    times = [t for t, _ in starts] + [end]
    return {name: times[i + 1] - t for i, (t, name) in enumerate(starts)}


def by_family(seconds: dict[str, float]) -> dict[str, list[float]]:
    """Stage seconds grouped by family (``train@a-0`` -> ``train``), in first-seen order."""
    families: dict[str, list[float]] = defaultdict(list)
    for name, s in seconds.items():
        families[name.split("@")[0]].append(s)
    return families


def main(path: str) -> None:
    seconds = stage_seconds(Path(path).read_text().splitlines())
    families = by_family(seconds)
    total = sum(seconds.values()) or 1.0
    print("| stage | runs | seconds | share |\n|---|---|---|---|")
    for family, values in sorted(families.items(), key=lambda kv: -sum(kv[1])):
        print(f"| `{family}` | {len(values)} | {sum(values):.0f} | {sum(values) / total:.0%} |")
    print(f"| total | {len(seconds)} | {total:.0f} | |")
    slowest = sorted(seconds.items(), key=lambda kv: -kv[1])[:5]
    print("\nslowest: " + ", ".join(f"`{name}` {s:.0f} s" for name, s in slowest))


if __name__ == "__main__":
    main(sys.argv[1])
