"""Choose S3TA's search task (``data.scenes``) and its training budget on a held-out split of the
scenes' training images, never on the test images.

The task must need search: a model that sees only a fixed central crop has to fail where a model
that sees the whole image does not, *under the training the claims use* (PGD-AT). This script
generates the scenes as a profile resolves ``data.scenes`` (with ``--data`` overrides, JSON),
prepares them, holds out ``--val-fraction`` of the training images (independent draws, so a
random split does not leak), trains each ``--candidate`` on the rest (one seed) and prints, per
candidate, the held-out clean accuracy and the accuracy under untargeted PGD-10 at ``--eps``::

    python bench/scenes_search.py --candidate rt8=scenes_pgd_at_rt \\
        --candidate crop8=scenes_pgd_at_crop \\
        --candidate rt4='scenes_pgd_at_rt:{"train_eps": 4, "train_step_size": 1.5}' \\
        --data '{"dominant_scale": [0.22, 0.30]}'

A candidate is ``label=experiment`` or ``label=experiment:{overrides}``, the overrides replacing
keys of the experiment's section (``model_args`` too, whole; ``null`` removes a key).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from tune_real import resolved_params, write_held_out  # noqa: E402


def held_out_split(full: Path, out: Path, fraction: float, seed: int, shard_size: int) -> tuple[int, int]:
    """``full``'s training split to ``out``: a seeded ``fraction`` of it as the test split."""
    from attnrobust.data.prepared import read_split

    n = len(read_split(full, "train").ids)
    held = np.zeros(n, bool)
    held[np.random.default_rng(seed).permutation(n)[: round(fraction * n)]] = True
    write_held_out(full, held, out, shard_size, dataset="scenes")
    return int((~held).sum()), int(held.sum())


def parse_candidate(text: str) -> tuple[str, str, dict]:
    label, _, spec = text.partition("=")
    name, _, overrides = spec.partition(":")
    return label, name, json.loads(overrides) if overrides else {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--candidate", action="append", required=True, help="label=experiment[:{json overrides}]")
    ap.add_argument("--data", default="{}", help="JSON overrides of data.scenes")
    ap.add_argument("--eps", type=float, default=8.0, help="PGD-10 budget, in levels of 255")
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0, help="the scenes, the split and the training seed")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scenes_search.json")
    args = ap.parse_args(argv)

    from attnrobust.checkpoint import load_model
    from attnrobust.config import build
    from attnrobust.data.fetch import fetch_dataset
    from attnrobust.data.prepare import PREPARERS, prepare_dataset
    from attnrobust.experiment import parse_experiment
    from attnrobust.tasks import task_for
    from attnrobust.training import TrainConfig, train_experiment

    params = resolved_params(args.profile)
    data = {**params["data"]["scenes"], **json.loads(args.data)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fetch_dataset("scenes", tmp / "raw", source="synthetic", seed=args.seed,
                      synth_values={**data, "local_dir": str(tmp / "raw")}, where="data.scenes")
        prep_cfg = build(PREPARERS["scenes"][0], params["masks"]["scenes"], "masks.scenes")
        prepare_dataset("scenes", tmp / "raw", tmp / "full", prep_cfg)
        n_train, n_held = held_out_split(tmp / "full", tmp / "tune", args.val_fraction, args.seed, prep_cfg.shard_size)
        print(f"[scenes_search] {n_train} training, {n_held} held-out images; data.scenes {json.dumps(data)}",
              file=sys.stderr)
        for text in args.candidate:
            label, name, overrides = parse_candidate(text)
            section = {k: v for k, v in {**params["experiments"][name], **overrides}.items() if v is not None}
            exp = parse_experiment(name, section, f"experiments.{name}")
            cfg = build(TrainConfig, {**params["train"], "seeds": [args.seed]}, "train")
            start = time.perf_counter()
            out = tmp / "model" / label
            train_experiment(exp, cfg, tmp / "tune", out, tmp / "live" / label, seed=args.seed)
            task = task_for(exp)
            held = task.load(tmp / "tune", "test")
            model = load_model(out / "model.pt").eval()
            with torch.no_grad():
                clean = model(held.x).argmax(1) == held.y
            x_adv = task.attack(model, held.x, held.y, eps=args.eps, steps=10, step_size=2.5 * args.eps / 10,
                                generator=torch.Generator().manual_seed(args.seed))
            with torch.no_grad():
                robust = model(x_adv).argmax(1) == held.y
            n = len(held.y)
            row = {"label": label, "experiment": name, "overrides": overrides, "n_held_out": n,
                   "clean_acc": round(float(clean.float().mean()), 4),
                   "clean_se": round(float(clean.float().std() / n ** 0.5), 4),
                   f"pgd10_eps{args.eps:g}_acc": round(float(robust.float().mean()), 4),
                   "seconds": round(time.perf_counter() - start, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"profile": args.profile, "data": data, "val_fraction": args.val_fraction,
                                    "seed": args.seed, "eps": args.eps, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
