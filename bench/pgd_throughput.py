"""PGD throughput: our PGD vs. ART's PGD on the same model and batch, as ratios in one process.

Usage (after `make run`, so a trained model exists; otherwise a fresh model is used and said so):
    make bench            # installs the `bench` extra (ART) and runs this script

Both attacks: L-inf, eps 8/255, 10 steps of 2/255, no random start (so the trajectories are
comparable), batch of 256 test images. Timings are medians of alternating repeats, because
these machines are noisy; only the ratios are meant to be compared across machines.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from attnrobust.attacks import pgd
from attnrobust.checkpoint import load_model
from attnrobust.data.prepared import load_prepared
from attnrobust.models import build_model

EPS, STEP, STEPS, BATCH, REPEATS = 8 / 255, 2 / 255, 10, 256, 3


def load_inputs(root: Path):
    model_dir, data_dir = root / "models" / "gtsrb_pgd_at", root / "data" / "prepared" / "gtsrb"
    if data_dir.is_dir():
        x, y, _ = load_prepared(data_dir, "test")
        x, y = x[:BATCH], y[:BATCH]
    else:
        print("no data/prepared/gtsrb: using random inputs", file=sys.stderr)
        x, y = torch.rand(BATCH, 3, 32, 32), torch.randint(0, 43, (BATCH,))
    if model_dir.is_dir():
        return load_model(model_dir), x, y, "models/gtsrb_pgd_at"
    print("no trained model: using a freshly initialised one (run `make run` first)", file=sys.stderr)
    torch.manual_seed(0)
    return build_model("cnn", num_classes=43, mean=[0.5] * 3, std=[0.25] * 3).eval(), x, y, "untrained cnn"


def art_pgd(model, x, y):
    from art.attacks.evasion import ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    clf = PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                            nb_classes=int(model(x[:1]).shape[1]), clip_values=(0.0, 1.0), device_type="cpu")
    attack = ProjectedGradientDescentPyTorch(clf, norm=np.inf, eps=EPS, eps_step=STEP, max_iter=STEPS,
                                             num_random_init=0, batch_size=len(x), verbose=False)
    return lambda: torch.from_numpy(attack.generate(x.numpy(), y=y.numpy()))


def ours(model, x, y, early_stop: bool):
    loss = None if early_stop else (lambda logits, t: F.cross_entropy(logits, t, reduction="sum"))
    return lambda: pgd(model, x, y, eps=EPS, steps=STEPS, step_size=STEP, random_start=False, loss_fn=loss)


def timed(fn) -> tuple[float, torch.Tensor]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    torch.set_num_threads(2)
    model, x, y, name = load_inputs(Path.cwd())
    runs = {"art": art_pgd(model, x, y), "ours_no_early_stop": ours(model, x, y, False),
            "ours": ours(model, x, y, True)}
    times = {k: [] for k in runs}
    accs = {}
    for _ in range(REPEATS):  # alternate so drift in machine load hits every variant alike
        for key, fn in runs.items():
            dt, x_adv = timed(fn)
            times[key].append(dt)
            with torch.no_grad():
                accs[key] = float((model(x_adv).argmax(1) == y).float().mean())
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"model: {name}; batch {len(y)}; PGD-{STEPS} eps 8/255 step 2/255, no random start; "
          f"torch threads {torch.get_num_threads()}")
    for key in runs:
        print(f"  {key:20s} median {med[key]:.3f}s  robust acc {accs[key]:.4f}  "
              f"speed-up vs ART {med['art'] / med[key]:.2f}x")


if __name__ == "__main__":
    main()
