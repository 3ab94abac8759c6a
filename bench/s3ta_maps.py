"""Why S3TA's attention does not depend on the image, and which model change makes it.

Trains ``gtsrb_s3ta`` as a profile resolves it (one seed), once per ``--variant`` (model_args
overrides as JSON), on the training images minus a held-out part, and scores each on the
held-out part only (never the test images): clean accuracy, and per glance how much the
attention maps vary between images (mean total-variation distance of two images' maps,
attnrobust.metrics.attention), how peaked they are, and, at the first glance, how much of the
attention logits' spread over positions comes from the image (the keys) and how much from the
fixed spatial basis. Real GTSRB is held out by track (bench/tune_real.py); a synthetic prepared
dataset by image (its images are independent draws)::

    python bench/s3ta_maps.py --raw ../shared/data/gtsrb --profile real-cpu \\
        --variant base='{}' --variant cosine='{"temperature": "cosine"}'
    python bench/s3ta_maps.py --prepared data/prepared/gtsrb --profile default --variant base='{}'
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
from tune_real import resolved_params, split_by_track, write_held_out  # noqa: E402


def logit_spread(model, x: torch.Tensor) -> dict[str, float]:
    """First glance: the std over positions of the attention logits' image term (queries · keys)
    and of their basis term (queries · spatial basis), averaged over images and heads."""
    from attnrobust.models.s3ta import spatial_basis

    with torch.no_grad():
        features = model.trunk(model.normalize(x))
        b, _, h, w = features.shape
        content = model.keys(features).flatten(2).transpose(1, 2)  # (B, hw, dk)
        parts = [content]
        if model.key_basis:
            parts.append(spatial_basis(h, w, model.basis_size).flatten(1).T.expand(b, -1, -1))  # (B, hw, U²)
        keys = torch.cat(parts, -1)
        norm = keys.norm(dim=-1, keepdim=True) if model.cosine else torch.ones_like(keys[..., :1])
        query = model.query(model.initial[0].expand(b, -1)).view(b, model.heads, model.query_dim)
        if model.cosine:
            query = torch.nn.functional.normalize(query, dim=-1)
        scale = model.log_scale.exp()
        dk = content.shape[-1]
        image_term = scale * (query[..., :dk] @ (content / norm).transpose(1, 2))  # (B, heads, hw)
        out = {"image_term_std": float(image_term.std(-1).mean())}
        if model.key_basis:
            basis_term = scale * (query[..., dk:] @ (parts[1] / norm).transpose(1, 2))
            out["basis_term_std"] = float(basis_term.std(-1).mean())
        return out


def score(model, x: torch.Tensor, y: torch.Tensor) -> dict:
    from attnrobust.metrics.attention import map_variation, peak_mass

    model.eval()
    with torch.no_grad():
        logits, maps = zip(*(model.forward_with_attention(x[s:s + 256]) for s in range(0, len(x), 256)))
    logits, maps = torch.cat(logits), torch.cat(maps)
    pick = torch.from_numpy(np.random.default_rng(0).permutation(len(x))[:256])  # the split is in class order
    modal = [float((m == m.mode().values).float().mean()) for m in maps.flatten(3).argmax(-1).permute(1, 2, 0)[:, 0]]
    return {"val_acc": round(float((logits.argmax(1) == y).float().mean()), 4),
            "tv_between_images": [round(v, 4) for v in map_variation(maps[pick])],
            "peak_mass": [round(v, 4) for v in peak_mass(maps)],
            "modal_cell_share_head0": [round(v, 3) for v in modal],
            **{key: round(v, 4) for key, v in logit_spread(model, x[pick]).items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--raw", type=Path, help="real GTSRB in the official layout (held out by track)")
    source.add_argument("--prepared", type=Path, help="a prepared GTSRB dataset (held out by image)")
    ap.add_argument("--profile", default="real-cpu")
    ap.add_argument("--experiment", default="gtsrb_s3ta")
    ap.add_argument("--variant", action="append", required=True, help="name=JSON model_args overrides")
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "s3ta_maps.json")
    args = ap.parse_args(argv)

    from attnrobust.checkpoint import load_model
    from attnrobust.config import build
    from attnrobust.data.prepare import PREPARERS, prepare_dataset
    from attnrobust.data.prepared import load_prepared, read_split
    from attnrobust.experiment import parse_experiment
    from attnrobust.training import TrainConfig, train_experiment

    params = resolved_params(args.profile)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.raw:
            prep_cfg = build(PREPARERS["gtsrb"][0], params["masks"]["gtsrb"], "masks.gtsrb")
            prepare_dataset("gtsrb", args.raw, tmp / "full", prep_cfg)
            full, shard_size = tmp / "full", prep_cfg.shard_size
        else:
            full, shard_size = args.prepared, 256
        train = read_split(full, "train")
        if args.raw:
            held = split_by_track(train.ids, args.val_fraction, args.seed)
        else:
            held = np.random.default_rng(args.seed).random(len(train.labels)) < args.val_fraction
        write_held_out(full, held, tmp / "tune", shard_size)
        x_val, y_val, _ = load_prepared(tmp / "tune", "test")
        print(f"[s3ta_maps] {int((~held).sum())} training, {int(held.sum())} held-out images", file=sys.stderr)
        exp = parse_experiment(args.experiment, params["experiments"][args.experiment],
                               f"experiments.{args.experiment}")
        cfg = build(TrainConfig, {**params["train"], "seeds": [args.seed]}, "train")
        for spec in args.variant:
            name, _, overrides = spec.partition("=")
            variant = type(exp)(**{**exp.__dict__, "model_args": {**exp.model_args, **json.loads(overrides or "{}")}})
            start = time.perf_counter()
            train_experiment(variant, cfg, tmp / "tune", tmp / name, tmp / f"live-{name}", seed=args.seed)
            seconds = round(time.perf_counter() - start, 1)
            row = {"variant": name, "model_args": variant.model_args, "seconds": seconds,
                   **score(load_model(tmp / name), x_val, y_val)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"profile": args.profile, "source": str(args.raw or args.prepared),
                                    "val_fraction": args.val_fraction, "seed": args.seed, "rows": rows},
                                   indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
