"""Choose the real-data profile's training hyperparameters on a split of the GTSRB training
tracks, never on the test images.

The frames of one GTSRB track are near-duplicates of one physical sign, so a random split of
training images leaks: the held-out fraction here is a seeded draw of whole tracks
(``<class>/<track>`` from the file name ``TTTTT_FFFFF.ppm``). Every candidate trains on the other
tracks with the profile's resolved settings (one seed) and is scored on the held-out tracks'
clean accuracy; the script prints one row per candidate, with the seconds it took, and writes
them as JSON::

    python bench/tune_real.py --raw ../shared/data/gtsrb --profile real-cpu \\
        --experiment gtsrb_standard --experiment gtsrb_pgd_at --lr 0.002 --lr 0.004 --lr 0.008

A candidate is a value of ``train.lr``, ``train.epochs`` and ``train.batch_size`` (every combination
is trained), at the profile's model width or ``--width``; nothing else of the profile changes.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]


def track_of(relpath: str) -> str:
    """``GTSRB/Training/00012/00034_00021.ppm`` -> ``00012/00034``: the class folder and the track."""
    parts = relpath.split("/")
    return f"{parts[-2]}/{parts[-1].split('_')[0]}"


def split_by_track(ids: list[str], fraction: float, seed: int) -> np.ndarray:
    """A boolean mask over ``ids``: True for the images of a seeded ``fraction`` of each class's tracks
    (at least one track per class that has two or more)."""
    by_class: dict[str, list[str]] = {}
    for track in sorted({track_of(i) for i in ids}):
        by_class.setdefault(track.split("/")[0], []).append(track)
    rng = random.Random(seed)
    held: set[str] = set()
    for tracks in by_class.values():
        if len(tracks) > 1:
            held.update(rng.sample(tracks, max(1, round(fraction * len(tracks)))))
    return np.array([track_of(i) in held for i in ids])


def write_held_out(full: Path, held: np.ndarray, out: Path, shard_size: int, dataset: str = "gtsrb") -> None:
    """Write ``full``'s training split to ``out`` as a prepared dataset: the images where ``held`` is
    False as its train split, the held-out ones as its test split (classes kept)."""
    from attnrobust.data.prepared import read_meta, read_split, write_prepared

    train = read_split(full, "train")
    sub = lambda keep: type(train)(train.images[keep], train.masks[keep], train.labels[keep],  # noqa: E731
                                   [i for i, k in zip(train.ids, keep) if k])
    out.mkdir(parents=True)
    write_prepared(out, {"train": sub(~held), "test": sub(held)}, dataset=dataset,
                   classes=read_meta(full)["classes"], shard_size=shard_size)


def resolved_params(profile: str) -> dict:
    from attnrobust.config import apply_profile

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    return apply_profile({**raw, "profile": profile}, REPO / "params.yaml")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--raw", type=Path, required=True, help="real GTSRB in the official layout")
    ap.add_argument("--profile", default="real-cpu")
    ap.add_argument("--experiment", action="append", required=True)
    ap.add_argument("--lr", type=float, action="append", default=[])
    ap.add_argument("--epochs", type=int, action="append", default=[])
    ap.add_argument("--batch-size", type=int, action="append", default=[])
    ap.add_argument("--width", type=int, default=None, help="model_args.width for every candidate")
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0, help="the track draw and the training seed")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "tune_real.json")
    args = ap.parse_args(argv)

    from attnrobust.config import build
    from attnrobust.data.prepare import PREPARERS, prepare_dataset
    from attnrobust.data.prepared import read_split
    from attnrobust.experiment import parse_experiment
    from attnrobust.training import TrainConfig, train_experiment

    params = resolved_params(args.profile)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prep_cfg = build(PREPARERS["gtsrb"][0], params["masks"]["gtsrb"], "masks.gtsrb")
        prepare_dataset("gtsrb", args.raw, tmp / "full", prep_cfg)
        train = read_split(tmp / "full", "train")
        held = split_by_track(train.ids, args.val_fraction, args.seed)
        write_held_out(tmp / "full", held, tmp / "tune", prep_cfg.shard_size)
        n_tracks = len({track_of(i) for i in train.ids})
        print(f"[tune] {int((~held).sum())} training images, {int(held.sum())} held-out images "
              f"({len({track_of(i) for i, h in zip(train.ids, held) if h})} of {n_tracks} tracks)", file=sys.stderr)
        base = params["train"]
        for name in args.experiment:
            exp = parse_experiment(name, params["experiments"][name], f"experiments.{name}")
            for epochs in args.epochs or [exp.train.get("epochs", base["epochs"])]:
              for batch in args.batch_size or [exp.train.get("batch_size", base["batch_size"])]:
                for lr in args.lr or [exp.train.get("lr", base["lr"])]:
                    model_args = {**exp.model_args, **({"width": args.width} if args.width else {})}
                    exp_c = type(exp)(**{**exp.__dict__, "model_args": model_args,
                                         "train": {**exp.train, "lr": lr, "epochs": epochs, "batch_size": batch}})
                    cfg = build(TrainConfig, {**base, "seeds": [args.seed]}, "train")
                    start = time.perf_counter()
                    summary = train_experiment(exp_c, cfg, tmp / "tune", tmp / "model", tmp / "live", seed=args.seed)
                    row = {"experiment": name, "width": model_args.get("width"), "epochs": epochs,
                           "batch_size": batch, "lr": lr,
                           "val_acc": round(float(summary["clean_acc"]), 4),
                           "seconds": round(time.perf_counter() - start, 1)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"profile": args.profile, "raw": str(args.raw), "val_fraction": args.val_fraction,
                                    "seed": args.seed, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
