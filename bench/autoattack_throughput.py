"""Throughput of `attack.suite: standard`, and our AutoAttack adapter's overhead over pyautoattack.

Usage (after `make run`, so a trained model exists: models/gtsrb_pgd_at, else gtsrb_standard; with
neither, a fresh cnn is used and said so, and then AutoAttack has nothing to break):
    python bench/autoattack_throughput.py [--n 64] [--square-queries 1000] [--threads 2]

1. The whole `standard` suite (our FGSM/PGD attacks and sweeps from params.yaml's `attack`
   section, plus AutoAttack-standard) on a seeded subset of `--n` test images, extrapolated
   linearly to 1000 images. AutoAttack's cost scales with the points still robust after each
   attack, so the subset must be a random one (it is) and the figure is an estimate.
2. The adapter (`attacks.autoattack.run_autoattack`) against `pyautoattack.AutoAttack` run
   directly on the same model and batch (same seed, targets and Square budget), as a time ratio
   in one process, plus whether both give the same per-sample verdicts (they should: the same
   attack code runs on the same batches).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

from attnrobust.attacks.autoattack import MAX_TARGETS, run_autoattack
from attnrobust.units import levels_to_input
from attnrobust.attacks.suite import AttackConfig, run_suite, select_subset
from attnrobust.checkpoint import load_model
from attnrobust.config import load_section
from attnrobust.data.prepared import load_prepared
from attnrobust.models import build_model

CPU = torch.device("cpu")


def load_inputs(root: Path, n: int, seed: int):
    """(model, x, y, description): models/gtsrb_pgd_at (else gtsrb_standard) on GTSRB test images."""
    data_dir = root / "data" / "prepared" / "gtsrb"
    if data_dir.is_dir():
        x, y, _ = load_prepared(data_dir, "test")
        index = torch.from_numpy(select_subset(len(y), n, seed))
        x, y, data = x[index], y[index], f"{n} seeded GTSRB test images"
    else:
        x, y, data = torch.rand(n, 3, 32, 32), torch.randint(0, 43, (n,)), f"{n} random images"
    for exp in ("gtsrb_pgd_at", "gtsrb_standard"):  # a robust model keeps points alive, so AA does work
        if (root / "models" / exp).is_dir():
            return load_model(root / "models" / exp), x, y, f"models/{exp}; {data}"
    print("no trained model: using a freshly initialised cnn (run `make run` first)", file=sys.stderr)
    torch.manual_seed(0)
    model = build_model("cnn", num_classes=43, mean=[0.5] * 3, std=[0.25] * 3).eval()
    return model, x, y, f"untrained cnn; {data}"


def direct_autoattack(model, x, y, eps: float, num_classes: int, square_queries: int, batch_size: int):
    """pyautoattack's own facade, set up as the adapter sets itself up; returns per-sample robustness."""
    from pyautoattack import AutoAttack

    aa = AutoAttack(model, eps=eps, seed=0, version="standard", device=CPU)
    aa.apgd_targeted.n_target_classes = aa.fab.n_target_classes = min(MAX_TARGETS, num_classes - 1)
    aa.square.n_queries = square_queries
    _, y_adv = aa.run_standard_evaluation(x, y, batch_size=batch_size)
    return y_adv == y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="images measured (extrapolated to 1000)")
    parser.add_argument("--square-queries", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = load_section(Path("params.yaml"), "attack", AttackConfig) if Path("params.yaml").is_file() \
        else AttackConfig(eps=8, steps=10)
    cfg = dataclasses.replace(base, suite="standard", n_samples=0, device="cpu", aa_square_queries=args.square_queries)
    model, x, y, name = load_inputs(Path.cwd(), args.n, cfg.seed)
    num_classes = int(model(x[:1]).shape[1])

    summary, _ = run_suite(model, x, y, cfg, num_classes=num_classes, device=CPU)
    suite_s, aa_s = summary["runtime_s"], summary["autoattack"]["runtime_s"]["total"]

    eps = levels_to_input(cfg.eps)
    t0 = time.perf_counter()
    _, cols = run_autoattack(model, x, y, eps=eps, num_classes=num_classes, device=CPU,
                             batch_size=cfg.batch_size, seed=0, square_queries=args.square_queries)
    ours_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    reference = direct_autoattack(model, x, y, eps, num_classes, args.square_queries, cfg.batch_size)
    direct_s = time.perf_counter() - t0

    per_k = 1000 / len(y)
    print(f"model: {name}; eps {cfg.eps}/255; Square {args.square_queries} queries; "
          f"torch threads {torch.get_num_threads()}; device cpu")
    print(f"clean {summary['clean_acc']:.3f}  pgd {summary['pgd_acc']:.3f}  "
          f"autoattack {summary['autoattack_acc']:.3f}  worst case {summary['robust_acc']:.3f}")
    print(f"{'measured':34s} {'seconds':>9s} {'s / 1000 images (extrapolated)':>32s}")
    print(f"{'standard suite (ours + AA)':34s} {suite_s:9.2f} {suite_s * per_k:32.1f}")
    print(f"{'  of which AutoAttack-standard':34s} {aa_s:9.2f} {aa_s * per_k:32.1f}")
    for attack, seconds in summary["autoattack"]["runtime_s"].items():
        if attack != "total":
            print(f"{'    ' + attack:34s} {seconds:9.2f} {seconds * per_k:32.1f}")
    print(f"{'adapter (run_autoattack)':34s} {ours_s:9.2f} {ours_s * per_k:32.1f}")
    print(f"{'pyautoattack.AutoAttack direct':34s} {direct_s:9.2f} {direct_s * per_k:32.1f}")
    print(f"adapter / direct time: {ours_s / direct_s:.2f}x; same per-sample verdicts: "
          f"{torch.equal(cols['autoattack_correct'], reference)}")


if __name__ == "__main__":
    main()
