"""Are the attacks as strong under bf16 autocast as in fp32? (issue 15: ``precision: auto`` may only
pick bf16 on a CPU if they are.)

Runs ``stages/attack.py`` twice on each trained model named (``<exp>/s<seed>``, from a finished
default run's ``models/``): once with ``attack.precision: fp32`` and once with ``bf16``, everything
else as in params.yaml, into a temporary folder; prints per model the seconds of each, the clean
and worst-case accuracy of each, and the per-sample disagreements of the worst case (samples that
stand under one precision and fall under the other), and writes them as JSON::

    python bench/bf16_strength.py gtsrb_pgd_at/s0 gtsrb_s3ta/s0 coco_pgd_at/s0

An evaluation in bf16 is at least as strong where its worst case breaks every sample that fp32's
breaks (``stand_bf16_fall_fp32`` = 0); bf16's own clean accuracy may differ (the model's forward
pass changes), which the row shows.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def attack(exp: str, seed: str, precision: str, tmp: Path) -> tuple[dict, dict[str, int], float]:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["attack"]["precision"] = precision
    pfile = tmp / f"params-{precision}.yaml"
    pfile.write_text(yaml.safe_dump(params, sort_keys=False))
    if not (tmp / "profiles").exists():
        (tmp / "profiles").symlink_to(REPO / "profiles")  # the params file's profile overlays sit beside it
    out = tmp / f"{exp}-{seed}-{precision}"
    start = time.perf_counter()
    subprocess.run([sys.executable, "stages/attack.py", "--experiment", exp, "--model", f"models/{exp}/{seed}",
                    "--prepared-root", "data/prepared", "--out", str(out), "--params", str(pfile)],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    summary = json.loads((out / "summary.json").read_text())
    with open(out / "per_sample.csv") as f:
        worst = {row["id"]: int(row["worst_correct"]) for row in csv.DictReader(f)}
    return summary, worst, seconds


def compare(name: str, fp32: tuple[dict, dict[str, int], float], bf16: tuple[dict, dict[str, int], float]) -> dict:
    """One row: the two runs' times, clean and worst-case accuracy, and their per-sample disagreements."""
    (s32, w32, t32), (s16, w16, t16) = fp32, bf16
    if set(w32) != set(w16):
        raise ValueError(f"{name}: the fp32 and bf16 runs attacked different samples")
    return {"model": name, "n": len(w32),
            "seconds_fp32": round(t32, 1), "seconds_bf16": round(t16, 1), "speedup": round(t32 / t16, 2),
            "clean_fp32": round(s32["clean_acc"], 4), "clean_bf16": round(s16["clean_acc"], 4),
            "worst_fp32": round(s32["robust_acc"], 4), "worst_bf16": round(s16["robust_acc"], 4),
            "stand_bf16_fall_fp32": sum(bool(w16[i] and not w32[i]) for i in w32),
            "stand_fp32_fall_bf16": sum(bool(w32[i] and not w16[i]) for i in w32),
            "unreliable_fp32": s32.get("unreliable"), "unreliable_bf16": s16.get("unreliable")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="<experiment>/s<seed>, trained in models/")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "bf16_strength.json")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in args.models:
            exp, seed = name.split("/")
            row = compare(name, *(attack(exp, seed, p, tmp) for p in ("fp32", "bf16")))
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    flags = next((l for l in open("/proc/cpuinfo") if l.startswith("flags")), "").split()
    args.out.write_text(json.dumps({"cpu": cpu, "cpu_bf16": [f for f in flags if "bf16" in f or "amx" in f],
                                    "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
